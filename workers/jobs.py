"""RQ entry points. Arguments are JSON types only (RQ's JSON serializer).

``forward(destination, push, received_at)`` delivers one push to one destination:

* delivered → done;
* ``Skipped`` (not mapped, no building, …) → counted per reason in ``dt:skipped:<dest>``
  and logged, done;
* permanent failure (``InvalidEvent``, a 4xx other than 408/425/429) → dead letter, done;
* transient failure (network, timeout, 408/425/429, 5xx) → the job returns RQ's
  ``Retry`` with the next delay of ``RETRY_SCHEDULE_S`` (default ~15 h in all; jittered,
  ``Retry-After`` honoured); when the schedule is used up → dead letter.

The destinations are built once per worker process from the environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Retry, get_current_job

from connector import metrics, status
from connector.config import Settings
from connector.events import device_of
from connector.redis_conn import connect
from workers import deadletters
from workers.destinations import Destination, build_destinations
from workers.mapping import load_mapping
from workers.send import DEFAULT_SCHEDULE_S, Outcome, retry_delay_s
from workers.translate import InvalidEvent, Skipped

log = logging.getLogger("workers.forward")

SKIPPED_PREFIX = metrics.SKIPPED_PREFIX


class UnknownDestination(Exception):
    """The job names a destination this worker is not configured for (permanent failure)."""


class _Runtime:
    """Per-process state: settings, Redis, destinations (built on first use)."""

    def __init__(self) -> None:
        self.redis: Redis | None = None
        self.destinations: dict[str, Destination] = {}
        self.retry_schedule_s: tuple[int, ...] = DEFAULT_SCHEDULE_S

    def load(self) -> None:
        settings = Settings.from_env()
        mapping = load_mapping(settings.mapping_path)
        self.redis = connect(
            settings.redis_url, timeout_s=settings.redis_timeout_s, tls_verify=settings.redis_tls_verify
        )
        self.destinations = build_destinations(settings, mapping, self.redis)
        self.retry_schedule_s = settings.retry_schedule_s


_runtime = _Runtime()


def reset_runtime() -> None:
    """Forget the per-process state (tests; or after the environment changed)."""
    global _runtime
    _runtime = _Runtime()


def forward(destination: str, push: dict[str, Any], received_at: float, replay: bool = False) -> str | Retry:
    """Deliver one DT push to ``destination``; see the module docstring for outcomes.

    ``replay`` marks an operator's replay of a dead letter (MOOST takes those on its
    historical endpoint, like backfilled events).

    Raises:
        UnknownDestination: ``destination`` is not configured in this worker.
    """
    if _runtime.redis is None:
        _runtime.load()
    target = _runtime.destinations.get(destination)
    if target is None:
        raise UnknownDestination(f"destination {destination!r} is not configured in this worker")
    redis = _runtime.redis
    assert redis is not None
    event = push.get("event") or {}
    event_id = str(event.get("eventId", ""))
    now = time.time()
    job = get_current_job()
    key = job.id if job is not None else f"{destination}-{event_id}"
    try:
        outcome = target.deliver(push, event_id=event_id, now=now, replay=replay)
    except Skipped as skipped:
        redis.hincrby(SKIPPED_PREFIX + destination, skipped.reason, 1)
        _log(destination, event, "skipped", skipped.reason, detail=skipped.detail)
        return f"skipped:{skipped.reason}"
    except InvalidEvent as invalid:
        outcome = Outcome("failed", "invalid-event", excerpt=str(invalid))
    if outcome.kind == "delivered":
        finished = time.time()
        _count_delivered(redis, destination, push, now=finished, latency_s=finished - received_at)
        _log(destination, event, "delivered", outcome.reason, latency_s=finished - received_at)
        return "delivered"
    if outcome.kind == "retry":
        attempt = (job.number_of_retries or 0) + 1 if job is not None else 1
        schedule = _runtime.retry_schedule_s
        delay = retry_delay_s(attempt, rand=random.random(), retry_after_s=outcome.retry_after_s, schedule=schedule)
        if delay is not None:
            _count_failure(redis, destination, "retried", now=now, reason=outcome.reason)
            _log(destination, event, "retrying", outcome.reason, status=outcome.status, attempt=attempt, delay_s=delay)
            return Retry(max=len(schedule) + 1, interval=max(1, round(delay)))
        outcome = Outcome("failed", f"retries-exhausted:{outcome.reason}", outcome.status, excerpt=outcome.excerpt)
    deadletters.record(
        redis,
        key=key,
        destination=destination,
        push=push,
        received_at=received_at,
        reason=outcome.reason,
        status=outcome.status,
        excerpt=outcome.excerpt,
        now=now,
    )
    _count_failure(redis, destination, "dead_lettered", now=now, reason=outcome.reason)
    _log(destination, event, "dead-letter", outcome.reason, status=outcome.status)
    return f"dead-letter:{outcome.reason}"


def _count_delivered(redis: Redis, destination: str, push: dict[str, Any], *, now: float, latency_s: float) -> None:
    """Record a delivery in the shared metrics (``connector.metrics``, ``connector.status``).

    One round trip; best effort: a metrics write that fails must not fail, or repeat, a delivery.
    """
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(metrics.DELIVERY_PREFIX + destination, "delivered", 1)
    latency = metrics.LATENCY_PREFIX + destination
    pipe.hincrby(latency, metrics.bucket_for(latency_s), 1)
    pipe.hincrbyfloat(latency, "sum", max(0.0, latency_s))
    pipe.hset(metrics.HEALTH_PREFIX + destination, "last_ok", repr(now))
    minute = f"{status.MINUTE_PREFIX}{destination}:{int(now // 60)}"
    pipe.incr(minute)
    pipe.expire(minute, status.MINUTE_TTL_S)
    if device := device_of(push):
        event = push.get("event") or {}
        labels = push.get("labels") if isinstance(push.get("labels"), dict) else {}
        last = {"eventType": event.get("eventType"), "eventId": event.get("eventId"), "at": now,
                "name": (labels or {}).get("name", ""), "destination": destination}  # fmt: skip
        pipe.hset(status.DEVICES_KEY, device, json.dumps(last))
    with contextlib.suppress(RedisError):
        pipe.execute()


def _count_failure(redis: Redis, destination: str, outcome: str, *, now: float, reason: str) -> None:
    """Record a retried or dead-lettered delivery (``outcome``); one round trip, best effort."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(metrics.DELIVERY_PREFIX + destination, outcome, 1)
    pipe.hset(metrics.HEALTH_PREFIX + destination, mapping={"last_error": repr(now), "last_error_reason": reason})
    with contextlib.suppress(RedisError):
        pipe.execute()


def _log(destination: str, event: dict[str, Any], outcome: str, reason: str, **extra: Any) -> None:
    level = logging.WARNING if outcome in ("dead-letter", "retrying") else logging.INFO
    if not log.isEnabledFor(level):
        return
    line = {
        "log": "delivery",
        "destination": destination,
        "eventId": event.get("eventId"),
        "eventType": event.get("eventType"),
        "outcome": outcome,
        "reason": reason,
        **{k: v for k, v in extra.items() if v is not None},
    }
    log.log(level, json.dumps(line, separators=(",", ":"), default=str))
