"""A scriptable HTTP server on 127.0.0.1 standing in for downstream APIs in tests.

Each request is answered by the next scripted ``Reply`` for its path (the last one
repeats), after an optional delay; every request is recorded with its headers, body and
client port (to observe keep-alive reuse).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int

    def json(self) -> Any:
        return json.loads(self.body)


class StandIn:
    """Start with ``StandIn()``; stop with ``close()``. ``script(path, *replies)`` sets answers."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                with standin._lock:
                    standin.requests.append(
                        Seen(self.command, self.path, dict(self.headers.items()), body, self.client_address[1])
                    )
                    script = standin._scripts.get(path) or [Reply(404)]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if isinstance(reply.body, bytes):  # sent as is (e.g. a body that is not JSON)
                    raw = reply.body
                else:
                    raw = b"" if reply.body is None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            do_GET = do_POST = do_PUT = _handle  # http.server dispatches on these names

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def events_posted(standin: StandIn, path: str) -> list[Any]:
    """The JSON bodies ``standin`` received on ``path``, in order."""
    return [seen.json() for seen in standin.requests if seen.path == path]
