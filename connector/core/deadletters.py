"""Dead letters: deliveries that failed for good, kept with the reason for a bounded time.

Layout in Redis: one hash per dead letter, ``dt:dead:<job id>`` (destination, event id
and type, reason, HTTP status, response excerpt, failure time, the push itself), expiring
after ``DEAD_LETTER_TTL_S``; and an index ``dt:dead`` (sorted set, score = failure time)
trimmed of expired entries on every write, so neither can grow without bound.

Both sides use this store: the workers ``record`` letters; the status page and the CLI list
them and ``replay`` them (a new job each, under the job spec).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry

from connector.core.jobspec import (
    CRASH_RETRY_INTERVALS_S,
    DEFAULT_FAILURE_TTL_S,
    FORWARD_FUNC,
    RESULT_TTL_S,
    JobSerializer,
    job_description,
    replay_job_id,
)
from connector.core.keys import DEAD_LETTER_PREFIX as PREFIX
from connector.core.keys import DEAD_LETTERS as INDEX_KEY
from connector.core.keys import JOB_LEDGER

DEAD_LETTER_TTL_S = 14 * 24 * 3600


@dataclass(frozen=True)
class DeadLetter:
    key: str
    destination: str
    event_id: str
    event_type: str
    reason: str
    status: int | None
    excerpt: str
    failed_at: float
    received_at: float
    push: dict[str, Any]


def record(
    redis: Redis,
    *,
    key: str,
    destination: str,
    push: dict[str, Any],
    received_at: float,
    reason: str,
    status: int | None,
    excerpt: str,
    now: float,
    pipeline: Pipeline | None = None,
) -> None:
    """Keep a failed delivery (overwrites an earlier one for the same job).

    With ``pipeline`` the writes join that (transactional) pipeline instead of running now.
    """
    raw_event = push.get("event")
    event: dict[str, Any] = raw_event if isinstance(raw_event, dict) else {}
    fields: dict[str, str] = {
        "destination": destination,
        "event_id": str(event.get("eventId", "")),
        "event_type": str(event.get("eventType", "")),
        "reason": reason,
        "status": "" if status is None else str(status),
        "excerpt": excerpt,
        "failed_at": repr(now),
        "received_at": repr(received_at),
        "push": json.dumps(push, separators=(",", ":")),
    }
    pipe = pipeline if pipeline is not None else redis.pipeline(transaction=True)
    pipe.hset(PREFIX + key, mapping=fields)  # type: ignore[arg-type]  # redis-py's Mapping key is invariant
    pipe.expire(PREFIX + key, DEAD_LETTER_TTL_S)
    pipe.zadd(INDEX_KEY, {key: now})
    pipe.zremrangebyscore(INDEX_KEY, "-inf", now - DEAD_LETTER_TTL_S)
    if pipeline is None:
        pipe.execute()


def list_dead(
    redis: Redis,
    *,
    destination: str | None = None,
    event_type: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 1000,
) -> list[DeadLetter]:
    """Dead letters, oldest first, filtered. Read in pipelined batches, not one round trip each."""
    index = redis.zrangebyscore(INDEX_KEY, "-inf" if since is None else since, "+inf" if until is None else until)
    keys = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in index]
    found: list[DeadLetter] = []
    for start in range(0, len(keys), _BATCH):
        batch = keys[start : start + _BATCH]
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.hgetall(PREFIX + key)
        for key, raw in zip(batch, pipe.execute(), strict=True):
            letter = _letter(key, raw)
            if letter is None:
                continue
            if destination and letter.destination != destination:
                continue
            if event_type and letter.event_type != event_type:
                continue
            found.append(letter)
            if len(found) >= limit:
                return found
    return found


_BATCH = 200


def get(redis: Redis, key: str) -> DeadLetter | None:
    """One dead letter, or None when it expired or was replayed."""
    return _letter(key, redis.hgetall(PREFIX + key))  # type: ignore[arg-type]


def _letter(key: str, raw: dict[bytes, bytes]) -> DeadLetter | None:
    """A dead letter from its stored hash (empty: gone)."""
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return DeadLetter(
        key=key,
        destination=fields["destination"],
        event_id=fields["event_id"],
        event_type=fields["event_type"],
        reason=fields["reason"],
        status=int(fields["status"]) if fields["status"] else None,
        excerpt=fields["excerpt"],
        failed_at=float(fields["failed_at"]),
        received_at=float(fields["received_at"]),
        push=json.loads(fields["push"]),
    )


def remove(redis: Redis, key: str, *, pipeline: Pipeline | None = None) -> None:
    """Forget a dead letter (it was replayed); with ``pipeline``, as part of that transaction."""
    pipe = pipeline if pipeline is not None else redis.pipeline(transaction=True)
    pipe.delete(PREFIX + key)
    pipe.zrem(INDEX_KEY, key)
    if pipeline is None:
        pipe.execute()


def replay(redis: Redis, letters: list[DeadLetter], *, queue_name: str, job_timeout_s: int, now: float) -> list[str]:
    """Queue each dead letter again (as a replay) and remove it from the store; their keys.

    Each letter moves in one transaction: the new job, its count in the job ledger, and the
    dead letter's removal.
    """
    queue = Queue(queue_name, connection=redis, serializer=JobSerializer)
    now_ns = int(now * 1e9)
    for letter in letters:
        with redis.pipeline(transaction=True) as pipe:
            queue.enqueue(
                FORWARD_FUNC,
                args=(letter.destination, letter.push, letter.received_at),
                kwargs={"replay": True},
                job_id=replay_job_id(letter.destination, letter.key, now_ns),
                description=job_description(letter.destination),
                job_timeout=job_timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=DEFAULT_FAILURE_TTL_S,
                retry=Retry(max=len(CRASH_RETRY_INTERVALS_S), interval=list(CRASH_RETRY_INTERVALS_S)),
                pipeline=pipe,
            )
            pipe.hincrby(JOB_LEDGER, "created", 1)
            remove(redis, letter.key, pipeline=pipe)
            pipe.execute()
    return [letter.key for letter in letters]
