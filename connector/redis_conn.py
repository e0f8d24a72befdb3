"""Redis clients for the web and worker processes (I/O edge).

Heroku Redis requires TLS (``rediss://``) and presents a self-signed chain, so unless
``REDIS_TLS_VERIFY`` is on, certificate and hostname checks are switched off explicitly
(redis-py 6.0 made hostname checking the default and broke the usual recipe).
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def reply_text(value: bytes | str) -> str:
    """A Redis reply as text (clients here do not set ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else value


def connect(url: str, *, timeout_s: float | None, tls_verify: bool = False, connect_timeout_s: float = 5.0) -> Redis:
    """A pooled client for ``url`` with one quick retry.

    ``timeout_s`` bounds every command (None for RQ workers, whose dequeue blocks).

    The single retry absorbs a pooled connection that went stale (e.g. after a Redis
    restart) without stacking timeouts beyond what DT's ~10 s delivery deadline allows.
    """
    options: dict[str, object] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s or connect_timeout_s, connect_timeout_s),
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }
    if url.startswith("rediss://") and not tls_verify:
        options["ssl_cert_reqs"] = "none"
        options["ssl_check_hostname"] = False
    return Redis.from_url(url, **options)
