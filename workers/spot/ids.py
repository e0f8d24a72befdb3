"""Where ``setup spot`` records the Spot AI ids it made, and how workers read them (Redis).

The integration id is ``SPOT_INTEGRATION_ID`` when set, else the one recorded; an event type's id
is the mapping's when non-zero, else the one recorded for that integration. ``SpotIds`` caches
what it read for ``CACHE_S`` so a worker asks Redis at most twice a minute, and a ``setup spot``
run reaches running workers within that time, without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from redis import Redis
from redis.exceptions import RedisError

from connector.core.keys import SPOT_INTEGRATION_KEY, spot_event_types_key
from connector.core.redis_conn import reply_text

CACHE_S = 30.0


def recorded_integration(redis: Redis) -> int:
    """The integration id ``setup spot`` recorded (0: none)."""
    raw = redis.get(SPOT_INTEGRATION_KEY)
    text = reply_text(raw) if raw else ""
    return int(text) if text.isdigit() else 0


def recorded_event_types(redis: Redis, integration_id: int) -> dict[str, int]:
    """DT event type → Spot event type id, as ``setup spot`` recorded them for ``integration_id``."""
    raw = redis.hgetall(spot_event_types_key(integration_id))
    recorded = {}
    for key, value in raw.items():
        text = reply_text(value)
        if text.isdigit():
            recorded[reply_text(key)] = int(text)
    return recorded


def record(redis: Redis, integration_id: int, type_ids: Mapping[str, int], *, integration: bool) -> None:
    """Record ``type_ids`` for ``integration_id`` (and the integration itself when ``integration``)."""
    with redis.pipeline(transaction=True) as pipe:
        if integration:
            pipe.set(SPOT_INTEGRATION_KEY, integration_id)
        if type_ids:
            pipe.hset(spot_event_types_key(integration_id), mapping={k: str(v) for k, v in type_ids.items()})
        pipe.execute()


class SpotIds:
    """A worker process's view of the recorded ids, refreshed every ``CACHE_S``."""

    def __init__(self, redis: Redis, configured_integration: int, *, clock: Callable[[], float] = time.monotonic):
        self._redis = redis
        self._configured = configured_integration
        self._clock = clock
        self._cached: tuple[int, dict[str, int]] | None = None
        self._until = 0.0

    def current(self) -> tuple[int, dict[str, int]]:
        """``(integration id or 0, recorded event type ids)``; the last good read while Redis is away."""
        now = self._clock()
        if self._cached is not None and now < self._until:
            return self._cached
        try:
            integration = self._configured or recorded_integration(self._redis)
            types = recorded_event_types(self._redis, integration) if integration else {}
        except RedisError:
            if self._cached is not None:
                return self._cached
            raise
        # Until setup has run, ask again every time (one GET): its first events then go out at once.
        self._cached, self._until = (integration, types), (now + CACHE_S if integration else now)
        return self._cached
