"""Reference apps the ingress benchmark compares the receiver with (gunicorn factories).

* ``create_bare_app()`` — ``POST /dt/events`` reads the body and answers 200: the cost of
  gunicorn + Flask + HTTP alone, the ceiling no receiver can beat.
* ``create_durable_min_app()`` — reads the body and stores it with one Redis ``SET``
  under a key unique to the request: the least any receiver that acknowledges only
  after a durable write must do (one round trip to Redis).

Both answer with the receiver's 200 body and offer ``GET /healthz`` for the start-up
probe. They are served with the project's gunicorn settings, exactly like the receiver::

    gunicorn -c python:connector.web.gunicorn_config --bind 127.0.0.1:8000 'bench.apps:create_bare_app()'
"""

from __future__ import annotations

import itertools
import os

from flask import Flask, Response, request

from connector.core.redis_conn import connect
from connector.core.settings import default_of

_JSON = "application/json"
_ACCEPTED = b'{"status":"accepted"}'
_OK = b'{"status":"ok"}'


def create_bare_app() -> Flask:
    """``POST /dt/events`` → read the body, 200."""
    app = Flask("bench.bare")

    @app.post("/dt/events")
    def receive() -> Response:
        request.get_data(cache=False)
        return Response(_ACCEPTED, 200, mimetype=_JSON)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(_OK, 200, mimetype=_JSON)

    return app


def create_durable_min_app(redis_url: str | None = None) -> Flask:
    """``POST /dt/events`` → read the body, ``SET bench:<pid>:<n> <body>``, 200.

    Uses the receiver's Redis client settings (``connector.core.redis_conn.connect``, the same bounded
    pool) so the two differ only in what they do per request. ``redis_url`` defaults to ``REDIS_URL``.
    """
    url = redis_url or os.environ["REDIS_URL"]
    pool_size = int(os.environ.get("WEB_REDIS_CONNECTIONS") or default_of("WEB_REDIS_CONNECTIONS"))
    # As bounded as the receiver's.
    redis = connect(url, timeout_s=default_of("REDIS_TIMEOUT_S"), max_connections=pool_size)
    prefix = f"bench:{os.getpid()}:"
    counter = itertools.count()  # next() is atomic under the GIL: unique across threads
    app = Flask("bench.durable_min")

    @app.post("/dt/events")
    def receive() -> Response:
        body = request.get_data(cache=False)
        redis.set(f"{prefix}{next(counter)}", body)
        return Response(_ACCEPTED, 200, mimetype=_JSON)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(_OK, 200, mimetype=_JSON)

    return app
