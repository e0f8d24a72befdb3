"""The web process's gunicorn worker: gevent, with a deadline on every request (I/O edge).

A connection costs a greenlet, not a thread, so slow or silent clients cannot take the
threads DT's pushes need (gthread's 2 x 4 threads were held by 8 trickling sockets).
Two clocks bound what a client may hold:

* the request line and headers must arrive within ``keepalive`` seconds of the connection
  opening or of the previous answer (gunicorn's gevent worker, ``gunicorn_config.keepalive``);
* the whole request, body included, must be read and answered within
  ``WEB_REQUEST_DEADLINE_S`` (30 s). A client still trickling its body then is cut without
  an answer.

The cut happens on the greenlet that served the connection, so closing many sockets at
once never stalls accepting new ones (gthread closes timed-out sockets on its main loop).

gunicorn drops the application's ``Connection`` header; this worker honours a
``Connection: close`` from the app by closing the connection after the answer (a 413 leaves
the rest of the body unread, so keep-alive would misread it as the next request).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from connector.core.settings import Settings


class RequestDeadline(BaseException):
    """The request took longer than ``WEB_REQUEST_DEADLINE_S`` (raised inside its greenlet).

    A ``BaseException``, like gevent's own ``Timeout``: Flask must not turn it into a 500
    answer, and redis-py drops a connection it interrupts mid-command."""


class ReceiverWorker(GeventWorker):
    """gunicorn's gevent worker with a per-request deadline that honours ``Connection: close``."""

    request_deadline_s = Settings.web_request_deadline_s
    """Replaced by the served app's ``Settings`` once it is loaded (benchmark apps have none)."""

    def patch(self) -> None:
        # gunicorn's master imported ``ssl`` (it offers TLS options) before any worker patches;
        # gevent warns about that whenever ``ssl`` is already in ``sys.modules``. Nothing here
        # holds an ``ssl`` class from before the patch (``connector`` imports Flask, requests and
        # redis lazily, after it), so the warning does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already been imported")
            super().patch()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.flask_app = self.wsgi  # type: ignore[has-type]  # what gunicorn_config.worker_exit flushes
        receiver = getattr(self.flask_app, "extensions", {}).get("connector")
        if receiver is not None:
            self.request_deadline_s = receiver.settings.web_request_deadline_s
        self.wsgi = closing_when_asked(self.flask_app)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        try:
            with gevent.Timeout(self.request_deadline_s, RequestDeadline):
                served = bool(super().handle_request(listener_name, req, sock, addr))
            # Let the other connections' greenlets run before reading this connection's next request:
            # a client that sends its next request at once would otherwise keep the process to itself
            # (gevent switches only when a greenlet would block).
            gevent.sleep(0)
            return served
        except RequestDeadline:
            self.log.warning("request from %s cut after %.0f s (too slow)", _peer(addr), self.request_deadline_s)
            # StopIteration is how gunicorn's keep-alive loop is told to close the connection.
            raise StopIteration from None


def _peer(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def closing_when_asked(app: WsgiApp) -> WsgiApp:
    """``app``, with its ``Connection: close`` turned into gunicorn closing the connection."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(k.lower() == "connection" and v.strip().lower() == "close" for k, v in headers):
                response = getattr(start_response, "__self__", None)  # gunicorn's Response
                if response is not None and hasattr(response, "force_close"):
                    response.force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped

