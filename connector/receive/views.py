"""HTTP endpoints: ``POST /dt/events``, ``GET /healthz``, ``GET /readyz``.

The push view is deliberately thin: raw bytes → verify → parse → dedupe+enqueue → 200.
Every outcome, accepted or not, writes exactly one log line.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from connector.errors import PushTooLarge, QueueUnavailable, RejectedPush
from connector.events import Push, parse_push
from connector.keys import PUSH_COUNTERS
from connector.logs import push_line
from connector.ops.metrics import collect, render
from connector.ops.status import collect_status, render_status, replay_token
from connector.receive.signature import verify_push

if TYPE_CHECKING:
    from connector import Receiver

bp = Blueprint("connector", __name__)

# WSGI names of X-Dt-Signature and DT-Asymmetric-Signature. The server has already
# folded header names to this form, so the lookup is case-insensitive by construction.
_HS_ENVIRON = "HTTP_X_DT_SIGNATURE"
_ES_ENVIRON = "HTTP_DT_ASYMMETRIC_SIGNATURE"

_JSON = "application/json"
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
    return Response(_ACCEPTED if queued else _DUPLICATE, 200, mimetype=_JSON)


def _reject(exc: RejectedPush, started: float, push: Push | None, receiver: Receiver) -> Response:
    ms = (time.perf_counter() - started) * 1000
    receiver.access_log.write(
        push_line(status=exc.status_code, outcome="rejected", ms=ms, push=push, reason=exc.reason)
    )
    response = Response(
        json.dumps({"error": exc.reason, "detail": exc.detail}),
        exc.status_code,
        mimetype=_JSON,
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
    return response


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus metrics shared by all processes (token-guarded when ``METRICS_TOKEN`` is set)."""
    receiver, refusal = _operator()
    if refusal is not None:
        return refusal
    settings = receiver.settings
    try:
        snap = collect(
            receiver.redis, queue_name=settings.queue_name, destinations=settings.destinations, now=time.time()
        )
    except RedisError as exc:
        return _redis_down(receiver, f"# redis unavailable: {type(exc).__name__}\n", "text/plain")
    body = render(snap, destinations=settings.destinations)
    return Response(body, 200, content_type="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/status")
def status_page() -> Response:
    """The operator's status page (HTML; guarded like /metrics)."""
    receiver, refusal = _operator()
    if refusal is not None:
        return refusal
    settings = receiver.settings
    now = time.time()
    try:
        snap = collect(receiver.redis, queue_name=settings.queue_name, destinations=settings.destinations, now=now)
        data = collect_status(receiver.redis, snap, destinations=settings.destinations, now=now)
    except RedisError as exc:
        return _redis_down(receiver, f"<h1>Redis unavailable ({type(exc).__name__})</h1>", "text/html")
    form = replay_token(settings.metrics_token) if settings.metrics_token else None
    page = render_status(data, destinations=settings.destinations, now=now, replay_form=form)
    response = Response(page, 200, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    return response


@bp.post("/status/replay")
def status_replay() -> Response:
    """Re-queue the dead letters of one destination and reason, then back to the page."""
    receiver, refusal = _operator()
    settings = receiver.settings
    if not settings.metrics_token:
        return Response(b'{"error":"replay-disabled","detail":"set METRICS_TOKEN"}', 403, mimetype=_JSON)
    if refusal is not None:
        return refusal
    offered = request.form.get("form", "")
    if not hmac.compare_digest(offered.encode(), replay_token(settings.metrics_token).encode()):
        return Response(b'{"error":"bad-form","detail":"reload the status page"}', 403, mimetype=_JSON)
    from connector import deadletters
    from connector.cli.failed import requeue

    destination, reason = request.form.get("destination", ""), request.form.get("reason", "")
    letters = [x for x in deadletters.list_dead(receiver.redis, destination=destination) if x.reason == reason]
    requeue(receiver.redis, settings, letters, now=time.time())
    return Response(status=303, headers={"Location": "../status"})


def authorised(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``. Pure.

    Accepts ``Bearer <token>`` (Prometheus) and HTTP Basic with the token as password (a
    browser's login prompt). No token configured means the endpoints are open.
    """
    if not token:
        return True
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        offered = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(offered.encode(), token.encode())


def _operator() -> tuple[Receiver, Response | None]:
    """The receiver, and the 401 to answer when the request lacks ``METRICS_TOKEN`` (else None)."""
    receiver: Receiver = current_app.extensions["connector"]
    if authorised(request.headers.get("Authorization", ""), receiver.settings.metrics_token):
        return receiver, None
    return receiver, _unauthorised()


def _redis_down(receiver: Receiver, body: str, mimetype: str) -> Response:
    """503 with ``Retry-After``: Redis is down, so come back later."""
    response = Response(body, 503, mimetype=mimetype)
    response.headers["Retry-After"] = str(receiver.settings.retry_after_s)
    return response


def _unauthorised() -> Response:
    response = Response(b'{"error":"unauthorized","detail":"send the METRICS_TOKEN"}', 401, mimetype=_JSON)
    response.headers["WWW-Authenticate"] = 'Basic realm="dt-connector", charset="UTF-8"'
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (no dependencies checked)."""
    return Response(b'{"status":"ok"}', 200, mimetype=_JSON)


@bp.get("/readyz")
def readyz() -> Response:
    """Ready to accept pushes: Redis answers. 503 otherwise, so load balancers back off."""
    receiver: Receiver = current_app.extensions["connector"]
    try:
        receiver.redis.ping()
    except RedisError as exc:
        return _redis_down(receiver, f'{{"status":"unavailable","redis":"{type(exc).__name__}"}}', _JSON)
    return Response(b'{"status":"ready","redis":"ok"}', 200, mimetype=_JSON)
