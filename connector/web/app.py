"""The web process's Flask app: the receive path and the operator pages, built once per process.

``create_app()`` is the factory gunicorn calls (``connector.web.app:create_app()``): settings, the Redis
client, the verification policy and the dedupe+enqueue step are built here and injected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response
from redis import Redis
from werkzeug.exceptions import HTTPException

from connector.core.enqueue import Enqueuer
from connector.core.logs import AccessLog
from connector.core.logs import configure as configure_logging
from connector.core.redis_conn import connect_to
from connector.core.settings import Settings
from connector.web.ops.views import bp as ops
from connector.web.receive.signature import VerificationPolicy
from connector.web.receive.signing_keys import JwksKeyStore
from connector.web.receive.views import bp as receive

__all__ = ["Receiver", "create_app"]

log = logging.getLogger("connector")


@dataclass(frozen=True)
class Receiver:
    """What the push view needs, built once per process and kept on ``app.extensions``."""

    settings: Settings
    policy: VerificationPolicy
    redis: Redis
    enqueuer: Enqueuer
    access_log: AccessLog


def build_policy(settings: Settings, *, key_store: JwksKeyStore | None = None) -> VerificationPolicy:
    """The verification policy ``settings`` describe."""
    es_key_for = None
    es_issuer = ""
    if settings.asymmetric:
        store = key_store or JwksKeyStore(settings.oidc_discovery_url)
        es_key_for, es_issuer = store, store.issuer
    return VerificationPolicy(
        secrets=tuple(s.encode("utf-8") for s in settings.signature_secrets),
        es_key_for=es_key_for,
        es_issuer=es_issuer,
        org_id=settings.org_id,
        leeway_s=settings.signature_leeway_s,
        skip=settings.insecure_skip_verify,
    )


def create_app(
    settings: Settings | None = None, *, configure_logs: bool = True, access_log: AccessLog | None = None
) -> Flask:
    """Build the web app. ``settings=None`` reads them from the environment.

    ``access_log`` receives one JSON line per push (default: stdout).

    Raises:
        ConfigError: the configuration is incomplete or invalid (the process must not start).
    """
    settings = settings or Settings.from_env()
    if configure_logs:
        configure_logging()
    # A bounded pool: the web dyno's share of the Redis plan's connection limit is
    # WEB_CONCURRENCY x WEB_REDIS_CONNECTIONS, whatever the load or the number of clients.
    redis = connect_to(settings, max_connections=settings.web_redis_connections, client_name="dt-web")
    enqueuer = Enqueuer.from_settings(settings, redis)
    app = Flask(__name__)
    # One byte over the limit: Werkzeug silently truncates a chunked body at this length,
    # so the view reads limit + 1 bytes and can tell "exactly at the limit" from "over it".
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["connector"] = Receiver(
        settings=settings,
        policy=build_policy(settings),
        redis=redis,
        enqueuer=enqueuer,
        access_log=access_log or AccessLog(flush_interval_s=settings.access_log_flush_ms / 1000),
    )

    app.register_blueprint(receive)
    app.register_blueprint(ops)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # JSON instead of Werkzeug's HTML pages (404, 405, ...), for API clients and DT.
        slug = (exc.name or "error").lower().replace(" ", "-")
        body = f'{{"error":"{slug}"}}'
        return Response(body, exc.code or 500, mimetype="application/json")

    if settings.insecure_skip_verify:
        log.warning("SIGNATURE VERIFICATION IS OFF (DT_INSECURE_SKIP_VERIFY): anyone can push events")
    elif settings.asymmetric and not settings.org_id:
        log.warning("DT_ORG_ID is not set: pushes signed by DT for ANY organisation will be accepted")
    log.info("receiver ready: verifying %s; destinations %s", settings.verification_summary, settings.destinations)
    log.info(
        "operator pages (/metrics, /status): %s",
        "guarded by METRICS_TOKEN" if settings.metrics_token
        else "this machine only (loopback, no proxy); set METRICS_TOKEN to reach them from elsewhere",
    )
    return app
