"""The operator's endpoints: ``GET /metrics`` (Prometheus), ``GET /status`` and its replay form.

Guarded by ``METRICS_TOKEN`` when it is set (``Authorization: Bearer <token>``, or HTTP Basic
with the token as password, so a browser's login prompt works); wrong tokens are throttled
(``connector.web.ops.throttle``). Without a token the pages answer only requests made directly on
this machine (loopback, no proxy header): on Heroku, behind ngrok or on a public port they are
off until ``METRICS_TOKEN`` is set. No page may be framed (clickjacking of the Replay button).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import math
import time
from collections.abc import Container
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from redis.exceptions import RedisError

from connector.core import deadletters
from connector.web.answers import JSON, redis_unavailable
from connector.web.ops.metrics import CONTENT_TYPE, collect, render
from connector.web.ops.status import collect_status, render_status, replay_token
from connector.web.ops.throttle import FailedAttempts

if TYPE_CHECKING:
    from connector.web.app import Receiver

bp = Blueprint("ops", __name__)

THROTTLE = "operator_throttle"
"""``app.extensions`` key of this process's ``FailedAttempts``."""


@bp.record_once
def _add_throttle(state: BlueprintSetupState) -> None:
    state.app.extensions[THROTTLE] = FailedAttempts()


@bp.after_request
def _no_framing(response: Response) -> Response:
    response.headers["X-Frame-Options"] = "DENY"
    csp = response.headers.get("Content-Security-Policy")
    response.headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'" if csp else "frame-ancestors 'none'"
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
        text = f"# redis unavailable: {type(exc).__name__}\n"
        return redis_unavailable(receiver.settings.retry_after_s, text, "text/plain")
    body = render(snap, destinations=settings.destinations)
    return Response(body, 200, content_type=CONTENT_TYPE)


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
        return redis_unavailable(
            receiver.settings.retry_after_s, f"<h1>Redis unavailable ({type(exc).__name__})</h1>", "text/html"
        )
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
    if refusal is not None:
        return refusal
    if not settings.metrics_token:
        return Response(b'{"error":"replay-disabled","detail":"set METRICS_TOKEN"}', 403, mimetype=JSON)
    offered = request.form.get("form", "")
    if not hmac.compare_digest(offered.encode(), replay_token(settings.metrics_token).encode()):
        return Response(b'{"error":"bad-form","detail":"reload the status page"}', 403, mimetype=JSON)
    destination, reason = request.form.get("destination", ""), request.form.get("reason", "")
    letters = [x for x in deadletters.list_dead(receiver.redis, destination=destination) if x.reason == reason]
    deadletters.replay(
        receiver.redis, letters, queue_name=settings.queue_name, job_timeout_s=settings.job_timeout_s, now=time.time()
    )
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
    """The receiver, and the answer to give instead of the page (None: serve it).

    403 without ``METRICS_TOKEN`` unless the request came straight from this machine; 429 while
    the client (or everyone) has used up its wrong tokens; 401 for a missing or wrong token.
    """
    receiver: Receiver = current_app.extensions["connector"]
    token = receiver.settings.metrics_token
    if not token:
        names = {name.lower() for name, _value in request.headers.items()}
        return receiver, None if direct_from_this_machine(request.remote_addr, names) else _off()
    throttle: FailedAttempts = current_app.extensions[THROTTLE]
    client, now = _client(), time.monotonic()
    wait_s = throttle.wait_s(client, now)
    if wait_s > 0:
        return receiver, _too_many(wait_s)
    if authorised(request.headers.get("Authorization", ""), token):
        return receiver, None
    if request.headers.get("Authorization"):
        throttle.failed(client, now)
    return receiver, _unauthorised()


def direct_from_this_machine(remote_addr: str | None, header_names: Container[str]) -> bool:
    """A loopback peer that no proxy speaks for (ngrok and Heroku's router add X-Forwarded-For). Pure.

    ``header_names`` are the request's header names in lower case.
    """
    if any(name in header_names for name in ("x-forwarded-for", "forwarded", "x-real-ip")):
        return False
    try:
        peer = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    # gunicorn binds [::] in production, where an IPv4 client appears as ::ffff:a.b.c.d.
    mapped = peer.ipv4_mapped if isinstance(peer, ipaddress.IPv6Address) else None
    return (mapped or peer).is_loopback


def _client() -> str:
    """Who is guessing: the address Heroku's router (or any proxy) saw last, else the peer."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.rsplit(",", 1)[-1].strip() or request.remote_addr or "?"


def _off() -> Response:
    body = (b'{"error":"operator-pages-off","detail":"set METRICS_TOKEN to reach /metrics and /status '
            b'from another machine"}')  # fmt: skip
    return Response(body, 403, mimetype=JSON)


def _too_many(wait_s: float) -> Response:
    response = Response(b'{"error":"too-many-attempts","detail":"wrong METRICS_TOKEN too often"}', 429, mimetype=JSON)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


def _unauthorised() -> Response:
    response = Response(b'{"error":"unauthorized","detail":"send the METRICS_TOKEN"}', 401, mimetype=JSON)
    response.headers["WWW-Authenticate"] = 'Basic realm="dt-connector", charset="UTF-8"'
    return response
