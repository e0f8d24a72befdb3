"""Gunicorn settings of the web process (``dt-connector web``, the Procfile's ``web:``).

* binds ``$PORT`` on all interfaces (Heroku's router connects from outside the dyno);
* ``WEB_CONCURRENCY`` worker processes (Heroku sets it per dyno size), each serving up to
  ``worker_connections`` clients on greenlets (``connector.web.gunicorn_worker``): slow or silent
  clients cost a greenlet, not one of a handful of threads;
* a client has ``keepalive`` seconds to send each request's headers, and
  ``WEB_REQUEST_DEADLINE_S`` (30 s) for the whole request;
* timeouts under Heroku's 30 s router limit and 30 s SIGTERM→SIGKILL window;
* no access log: the app writes one structured line per push itself.
"""

from __future__ import annotations

import os

from connector.core.settings import PlatformSettings

_platform = PlatformSettings.from_env(os.environ)
bind = [f"[::]:{_platform.port}"]
workers = _platform.web_concurrency
worker_class = "connector.web.gunicorn_worker.ReceiverWorker"
worker_connections = 1000
timeout = 20
graceful_timeout = 20
keepalive = 5
# Clients are created per worker after fork; preloading would share nothing useful and
# would open the Redis pool in the master.
preload_app = False
accesslog = None
errorlog = "-"
loglevel = "warning"
# Heroku's router adds X-Forwarded-*; trust it (the buildpack sets the same default).
forwarded_allow_ips = _platform.forwarded_allow_ips


def post_worker_init(worker: object) -> None:
    """Tune the garbage collector for a request server, once the app is loaded.

    The app, its modules and clients live for the whole process: ``gc.freeze()`` keeps
    every later collection from re-scanning them. Requests allocate many short-lived,
    acyclic objects (freed by reference counting anyway), so the young generation is
    collected every 20,000 allocations instead of 700.
    """
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def worker_exit(server: object, worker: object) -> None:
    """Write out buffered push log lines, then end the worker process with the status it was exiting with.

    Ending it here skips the interpreter's teardown, where gevent's thread module is gone before
    logging's handler references are dropped and Python prints "Exception ignored ... TypeError"
    tracebacks on every stop. gunicorn calls this while the worker's ``SystemExit`` propagates.
    """
    import logging
    import sys

    app = getattr(worker, "flask_app", None) or getattr(worker, "wsgi", None)
    receiver = getattr(app, "extensions", {}).get("connector")
    if receiver is not None:
        receiver.access_log.flush()
    leaving = sys.exc_info()[1]
    status = leaving.code if isinstance(leaving, SystemExit) else (1 if leaving is not None else 0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status if isinstance(status, int) else 1)
