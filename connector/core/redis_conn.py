"""Redis clients for the web and worker processes, and riding out a short Redis outage (I/O edge).

Heroku Redis requires TLS (``rediss://``) and presents a self-signed chain, so unless
``REDIS_TLS_VERIFY`` is on, certificate and hostname checks are switched off explicitly
(redis-py 6.0 made hostname checking the default and broke the usual recipe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from redis import BlockingConnectionPool, ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

if TYPE_CHECKING:
    from connector.core.settings import Settings


def reply_text(value: bytes | str) -> str:
    """A Redis reply as text (clients here do not set ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else value


def connect(
    url: str,
    *,
    timeout_s: float | None,
    tls_verify: bool = False,
    connect_timeout_s: float = 5.0,
    max_connections: int | None = None,
    client_name: str | None = None,
) -> Redis:
    """A pooled client for ``url`` with one quick retry.

    ``timeout_s`` bounds every command (None: no bound).

    ``max_connections`` caps how many connections the pool ever opens: a thread that needs
    one while all are busy waits for the next free one (at most ``timeout_s``, else 20 s)
    instead of opening another, so a process's share of the Redis plan's connection limit is
    fixed by its configuration, not by its load. ``client_name`` labels the connections in
    ``CLIENT LIST`` (``dt-web``, ``dt-worker``, …), which is how the budget is measured.

    The single retry absorbs a pooled connection that went stale (e.g. after a Redis
    restart) without stacking timeouts beyond what DT's ~10 s delivery deadline allows.
    """
    options: dict[str, object] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s or connect_timeout_s, connect_timeout_s),
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }
    if client_name:
        options["client_name"] = client_name
    if url.startswith("rediss://") and not tls_verify:
        options["ssl_cert_reqs"] = "none"
        options["ssl_check_hostname"] = False
    pool: ConnectionPool
    if max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout_s or 20, **options)
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def connect_to(
    settings: Settings,
    *,
    timeout_s: float | None = None,
    max_connections: int | None = None,
    client_name: str | None = None,
) -> Redis:
    """``connect`` to the Redis ``settings`` name, with their TLS choice and, unless ``timeout_s`` is
    given, their ``REDIS_TIMEOUT_S``: how every process and command opens its client."""
    return connect(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s if timeout_s is None else timeout_s,
        tls_verify=settings.redis_tls_verify,
        max_connections=max_connections,
        client_name=client_name,
    )


REDIS_OUTAGE_WAIT_S = 8.0
"""How long a worker's bookkeeping waits for Redis to come back (a restart, a failover) before
giving up; the job stays recorded as started and is re-run after its execution expires."""

T = TypeVar("T")


def while_redis_recovers(call: Callable[[], T], *, for_s: float = REDIS_OUTAGE_WAIT_S) -> T:
    """``call()``, repeated while Redis is unreachable, for up to ``for_s`` seconds.

    Only for writes that are safe to repeat when a connection drops after Redis applied them
    (a transaction that did not reach ``EXEC`` did nothing).
    """
    deadline = time.monotonic() + for_s
    pause = 0.1
    while True:
        try:
            return call()
        except (RedisConnectionError, RedisTimeoutError):
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
