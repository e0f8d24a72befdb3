"""The receive path's endpoints: ``POST /dt/events``, ``GET /healthz``, ``GET /readyz``.

The push view is deliberately thin: raw bytes → verify → parse → dedupe+enqueue → 200.
Every outcome, accepted or not, writes exactly one log line.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from connector.core.errors import BadFraming, PushTooLarge, QueueUnavailable, RejectedPush
from connector.core.events import Push, parse_push
from connector.core.keys import PUSH_COUNTERS
from connector.core.logs import push_line
from connector.web.answers import JSON, redis_unavailable
from connector.web.receive.signature import verify_push

if TYPE_CHECKING:
    from connector.web.app import Receiver

bp = Blueprint("receive", __name__)

# WSGI names of X-Dt-Signature and DT-Asymmetric-Signature. The server has already
# folded header names to this form, so the lookup is case-insensitive by construction.
_HS_ENVIRON = "HTTP_X_DT_SIGNATURE"
_ES_ENVIRON = "HTTP_DT_ASYMMETRIC_SIGNATURE"

_ACCEPTED = b'{"status":"accepted"}'
_DUPLICATE = b'{"status":"duplicate"}'


@bp.post("/dt/events")
def receive_push() -> Response:
    """Acknowledge a DT push with 200 only once it is durably queued (or already was)."""
    started = time.perf_counter()
    receiver: Receiver = current_app.extensions["connector"]
    push: Push | None = None
    try:
        limit = receiver.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise PushTooLarge("too-large", f"body over {limit} bytes")
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise PushTooLarge("too-large", f"body over {limit} bytes") from None
        except Exception as exc:  # anything the server's body reader raises (gunicorn's
            # InvalidChunkSize is a ParseException, NoMoreData an OSError): the framing is bad
            raise BadFraming("bad-framing", f"the body could not be read ({type(exc).__name__})") from None
        if len(body) > limit:  # chunked upload without Content-Length
            raise PushTooLarge("too-large", f"body over {limit} bytes")
        environ = request.environ
        now = time.time()
        verify_push(
            body,
            hs_token=environ.get(_HS_ENVIRON),
            es_token=environ.get(_ES_ENVIRON),
            policy=receiver.policy,
            now=now,
        )
        push = parse_push(body)
        queued = receiver.enqueuer.enqueue(push.event_id, body, received_at=now)
    except RejectedPush as exc:
        return _reject(exc, started, push, receiver)
    ms = (time.perf_counter() - started) * 1000
    outcome = "accepted" if queued else "duplicate"
    receiver.access_log.write(push_line(status=200, outcome=outcome, ms=ms, push=push))
    return Response(_ACCEPTED if queued else _DUPLICATE, 200, mimetype=JSON)


def _reject(exc: RejectedPush, started: float, push: Push | None, receiver: Receiver) -> Response:
    ms = (time.perf_counter() - started) * 1000
    receiver.access_log.write(
        push_line(status=exc.status_code, outcome="rejected", ms=ms, push=push, reason=exc.reason)
    )
    response = Response(
        json.dumps({"error": exc.reason, "detail": exc.detail}),
        exc.status_code,
        mimetype=JSON,
    )
    if isinstance(exc, QueueUnavailable):
        response.headers["Retry-After"] = str(receiver.settings.retry_after_s)
    else:
        # Counted only when Redis answers: a 503 means it does not, and waiting on it twice
        # would only delay the answer DT is waiting for.
        with contextlib.suppress(RedisError):
            receiver.redis.hincrby(PUSH_COUNTERS, f"rejected:{exc.status_code}:{exc.reason}", 1)
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dt-data-connector"'
    if exc.closes_connection:  # rather than announce keep-alive and misread the leftovers
        response.headers["Connection"] = "close"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (no dependencies checked)."""
    return Response(b'{"status":"ok"}', 200, mimetype=JSON)


@bp.get("/readyz")
def readyz() -> Response:
    """Ready to accept pushes: Redis answers. 503 otherwise, so load balancers back off."""
    receiver: Receiver = current_app.extensions["connector"]
    try:
        receiver.redis.ping()
    except RedisError as exc:
        body = f'{{"status":"unavailable","redis":"{type(exc).__name__}"}}'
        return redis_unavailable(receiver.settings.retry_after_s, body)
    return Response(b'{"status":"ready","redis":"ok"}', 200, mimetype=JSON)
