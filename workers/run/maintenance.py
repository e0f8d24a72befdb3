"""Registry upkeep for one queue, run by every worker process's supervisor (one at a time, under a lock).

* RQ's own upkeep (``connector.core.rq_adapter.clean``): expired finished and failed entries go;
  a job whose execution expired (its worker died) is retried through its crash retries, or
  filed as failed when it has none left; a job id stranded between dequeue and execution for
  over a minute (its worker died in between) is handled the same way; registrations of workers
  that died are dropped;
* jobs in RQ's failed registry become dead letters (``sweep_failed``), which ``dt-connector
  failed``, the status page and its Replay see: RQ's failed registry is a way station here.

RQ's own cleaning holds a 15-minute lock that is never released when the cleaner dies or Redis
drops in the middle; this one takes redis-py's ``Lock`` with a ``LOCK_TTL_S`` lease, released in
``finally``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from redis import Redis
from redis.exceptions import LockError, RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from connector.core import deadletters, rq_adapter
from connector.core.jobspec import FORWARD_FUNC, JobSerializer
from connector.core.keys import DELIVERY_PREFIX, JOB_LEDGER, MAINTENANCE_LOCK_PREFIX
from connector.core.redis_conn import reply_text

log = logging.getLogger("workers")

LOCK_TTL_S = 60
SWEEP_BATCH = 100
"""Failed jobs turned into dead letters per pass (the rest wait for the next pass)."""


def run(redis: Redis, queue: Queue, worker: SimpleWorker, *, now: float) -> bool:
    """One maintenance pass over ``queue``; False when another process holds the lock.

    ``worker`` is the caller's RQ worker, which RQ's intermediate-queue cleanup files failures with.
    """
    lock = redis.lock(MAINTENANCE_LOCK_PREFIX + queue.name, timeout=LOCK_TTL_S, blocking=False)
    if not lock.acquire():
        return False
    try:
        reclaimed = rq_adapter.clean(queue, worker)
        if reclaimed:
            log.warning("%d job(s) abandoned after their retry was half-written (%s); retried", len(reclaimed),
                        ", ".join(reclaimed[:5]))  # fmt: skip
        sweep_failed(redis, queue, now=now)
    finally:
        with contextlib.suppress(LockError, RedisError):
            lock.release()
    return True


def sweep_failed(redis: Redis, queue: Queue, *, now: float) -> int:
    """Turn up to ``SWEEP_BATCH`` jobs of RQ's failed registry into dead letters; how many.

    Each moves in one transaction: the dead letter, its count in the job ledger and the
    destination's metrics, and the job leaving RQ's failed registry.
    """
    registry_key = queue.failed_job_registry.key
    moved = 0
    for raw in redis.zrange(registry_key, 0, SWEEP_BATCH - 1):
        job_id = reply_text(raw)  # type: ignore[arg-type]  # ZRANGE without scores: members only
        try:
            job = Job.fetch(job_id, connection=redis, serializer=JobSerializer)
        except NoSuchJobError:
            redis.zrem(registry_key, job_id)  # nothing left to keep (the ledger shows it unaccounted)
            continue
        destination, push, received_at = _call_of(job, job_id)
        result = job.latest_result()
        reason, excerpt = failure_summary(result.exc_string or "" if result is not None else "")
        with redis.pipeline(transaction=True) as pipe:
            deadletters.record(
                redis,
                key=job_id,
                destination=destination,
                push=push,
                received_at=received_at,
                reason=reason,
                status=None,
                excerpt=excerpt,
                now=now,
                pipeline=pipe,
            )
            pipe.hincrby(JOB_LEDGER, "dead_lettered", 1)
            pipe.hincrby(DELIVERY_PREFIX + destination, "dead_lettered", 1)
            pipe.zrem(registry_key, job_id)
            pipe.delete(job.key)
            pipe.execute()
        log.warning("job %s failed in RQ (%s); kept as a dead letter", job_id, reason)
        moved += 1
    return moved


def _call_of(job: Job, job_id: str) -> tuple[str, dict[str, Any], float]:
    """(destination, push, received_at) of a ``forward`` job; placeholders when unreadable."""
    fallback_destination = re.split(r"[-_]", job_id, maxsplit=1)[0]
    received_at = job.created_at.timestamp() if job.created_at else 0.0
    try:
        if job.func_name == FORWARD_FUNC and len(job.args) >= 3 and isinstance(job.args[1], dict):
            return str(job.args[0]), job.args[1], float(job.args[2])
    except Exception:  # an unreadable job is still kept, with what is known
        log.warning("job %s: call data unreadable", job_id)
    return fallback_destination, {}, received_at


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::|$)")


def failure_summary(exc_string: str) -> tuple[str, str]:
    """A dead-letter reason and excerpt from RQ's failure text. Pure.

    Only the exception's type and where it was raised are kept: its message may quote a
    header or a URL, and secrets must not reach a dead letter.
    """
    if "AbandonedJobError" in exc_string or "stuck in intermediate queue" in exc_string:
        return "worker-lost", "the worker running this job stopped (crash, SIGKILL, lost dyno) on every attempt"
    lines = [line.strip() for line in exc_string.strip().splitlines() if line.strip()]
    error = next((m["type"] for line in reversed(lines) if (m := _EXCEPTION.match(line))), "")
    if not error:
        return "worker-failed", "RQ filed the job as failed"
    name = error.rsplit(".", 1)[-1]
    frames = [m for line in lines if (m := _FRAME.search(line))]
    where = f" in {frames[-1]['func']} ({frames[-1]['file'].rsplit('/', 1)[-1]}:{frames[-1]['line']})" if frames else ""
    return f"worker-error:{name}", f"{name}{where}"
