"""The RQ job: ``forward(destination, push, received_at, replay=False)`` delivers one push to one destination.

Arguments are JSON types only. Every job ends in exactly one of these outcomes (the job
ledger counts it once, when RQ files the job: see ``workers.run.runner``):

* delivered → done;
* skipped (the mapping does not send this type there, or the device lacks what routing
  needs) → counted per reason in ``dt:skipped:<destination>`` and logged, done;
* transient failure (network, timeout, 408/425/429, 5xx, the job's deadline) → the job
  returns RQ's ``Retry`` with the next wait of ``RETRY_SCHEDULE_S`` (jittered, ``Retry-After``
  honoured); when the schedule is used up → dead letter;
* permanent failure (another 4xx, an event that cannot be made valid, a destination this
  worker is not configured for, or any error while translating or sending it) → dead
  letter with the reason, done. A push the worker cannot handle never crashes the job.

A Redis outage during the bookkeeping is waited out for a few seconds (``while_redis_recovers``);
only a longer one escapes, and RQ re-runs the job (its crash retries) once Redis answers again.
A delivery is marked on the job (``meta.delivered_at``) in the round trip that records it, so a
re-run after a crash finds the mark and does not send again; the downstream also sees the
eventId as idempotency key for the few milliseconds the mark is not yet written.

``Forwarder`` holds what jobs need — Redis, the destinations, the retry schedule, the job
deadline — built once per worker process from the settings and installed by the worker
(``install``); a worker that is not ours (``rq worker``) gets one built from the environment
on its first job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis import Redis
from redis.exceptions import RedisError
from rq import Retry, get_current_job
from rq.job import Job

from connector.core import deadletters, keys, rq_adapter
from connector.core.events import device_of
from connector.core.jobspec import job_id
from connector.core.redis_conn import connect_to, while_redis_recovers
from connector.core.settings import Settings
from workers.deliver.send import Outcome, retry_delay_s
from workers.destinations import Destination, build_destinations
from workers.translate.mapping import load_mapping
from workers.translate.pushes import InvalidEvent, Skipped

log = logging.getLogger("workers.forward")

BOOKKEEPING_S = 1.0
"""Time kept back from a job's timeout for recording its outcome after the last request."""

RESULT_META = "dt_result"
"""Where ``forward`` leaves its result text on the running job's ``meta``, in memory only, for the
worker to count in the transaction that files the job's success (``workers.run.runner``). RQ does
not save ``meta`` in that transaction, so the key never reaches Redis."""

Verdict = Literal["delivered", "skipped", "retry", "dead-letter"]


@dataclass(frozen=True)
class Decision:
    """What a job does with one delivery's outcome."""

    verdict: Verdict
    reason: str
    status: int | None = None
    excerpt: str = ""
    detail: str = ""
    """A skip's sentence (why the mapping does not send it)."""
    attempt: int | None = None
    delay_s: float | None = None
    """Seconds until the retry (``retry`` only)."""

    @property
    def result(self) -> str:
        """The job's result text: ``delivered``, ``skipped:<reason>`` or ``dead-letter:<reason>``."""
        return "delivered" if self.verdict == "delivered" else f"{self.verdict}:{self.reason}"


def decide(outcome: Outcome | Skipped, *, attempt: int, schedule: Sequence[int], rand: float) -> Decision:
    """Delivered, skipped, retried after a delay, or dead-lettered. Pure.

    ``attempt`` is this run's number (1 for the first); a transient failure is retried while
    ``schedule`` has a wait for it (jittered by ``rand``, at least the answer's ``Retry-After``),
    then dead-lettered as ``retries-exhausted:<reason>``.
    """
    if isinstance(outcome, Skipped):
        return Decision("skipped", outcome.reason, detail=outcome.detail)
    if outcome.kind == "delivered":
        return Decision("delivered", outcome.reason, outcome.status)
    if outcome.kind == "retry":
        delay = retry_delay_s(attempt, rand=rand, retry_after_s=outcome.retry_after_s, schedule=schedule)
        if delay is not None:
            return Decision("retry", outcome.reason, outcome.status, outcome.excerpt, attempt=attempt, delay_s=delay)
        return Decision("dead-letter", f"retries-exhausted:{outcome.reason}", outcome.status, outcome.excerpt)
    return Decision("dead-letter", outcome.reason, outcome.status, outcome.excerpt)


@dataclass
class Forwarder:
    """Everything a job needs, built once per worker process and passed in."""

    redis: Redis
    destinations: Mapping[str, Destination]
    retry_schedule_s: tuple[int, ...]
    job_timeout_s: float
    stop_at: float | None = None
    """Set by the worker on SIGTERM (a ``time.monotonic()`` reading): jobs in flight finish
    their requests by then, or are retried later."""

    @classmethod
    def build(cls, settings: Settings, redis: Redis, *, concurrency: int = 1) -> Forwarder:
        """The forwarder ``settings`` describe, for ``concurrency`` job threads sharing ``redis``.

        Raises:
            MappingError: the mapping file is invalid.
        """
        mapping = load_mapping(settings.mapping_path)
        return cls(
            redis=redis,
            destinations=build_destinations(settings, mapping, redis, concurrency=concurrency),
            retry_schedule_s=settings.retry_schedule_s,
            job_timeout_s=settings.job_timeout_s,
        )

    def forward(
        self,
        destination: str,
        push: dict[str, Any],
        received_at: float,
        *,
        replay: bool = False,
        job: Job | None = None,
    ) -> str | Retry:
        """Deliver one push in five steps: find, deliver, decide, record, log. See the module docstring.

        Returns the job's result text (``delivered``, ``skipped:<reason>``, ``dead-letter:<reason>``),
        or RQ's ``Retry`` with the decided wait.
        """
        raw_event = push.get("event")
        event: dict[str, Any] = raw_event if isinstance(raw_event, dict) else {}
        if job is not None and job.meta.get("delivered_at"):  # 1. find: a re-run after a crash sends nothing
            _log(destination, event, Decision("delivered", "already-delivered-before-a-crash"))
            return "delivered"
        now = time.time()
        outcome = self._deliver(  # 2. deliver
            destination, push, str(event.get("eventId", "")), now=now, replay=replay, deadline=self._deadline(job)
        )
        decision = decide(  # 3. decide (pure)
            outcome,
            attempt=(job.number_of_retries or 0) + 1 if job is not None else 1,
            schedule=self.retry_schedule_s,
            rand=random.random(),
        )
        finished = time.time()
        self._record(decision, destination, push, received_at, started=now, finished=finished, job=job)  # 4. record
        _log(destination, event, decision, latency_s=finished - received_at)  # 5. log
        if decision.verdict == "retry":
            return Retry(max=len(self.retry_schedule_s) + 1, interval=max(1, round(decision.delay_s or 0)))
        return decision.result

    def _record(
        self,
        decision: Decision,
        destination: str,
        push: dict[str, Any],
        received_at: float,
        *,
        started: float,
        finished: float,
        job: Job | None,
    ) -> None:
        """Write ``decision`` to Redis: statistics best effort, a dead letter for sure (waiting out a restart)."""
        if decision.verdict == "delivered":
            _count_delivered(self.redis, destination, push, now=finished, latency_s=finished - received_at, job=job)
        elif decision.verdict == "skipped":
            with contextlib.suppress(RedisError):  # a statistic: never fail the job for it
                self.redis.hincrby(keys.SKIPPED_PREFIX + destination, decision.reason, 1)
        elif decision.verdict == "retry":
            _count_failure(self.redis, destination, "retried", now=started, reason=decision.reason)
        else:
            event_id = str((push.get("event") or {}).get("eventId", ""))
            key = job.id if job is not None else job_id(destination, event_id)
            while_redis_recovers(
                lambda: deadletters.record(
                    self.redis,
                    key=key,
                    destination=destination,
                    push=push,
                    received_at=received_at,
                    reason=decision.reason,
                    status=decision.status,
                    excerpt=decision.excerpt,
                    now=started,
                )
            )
            _count_failure(self.redis, destination, "dead_lettered", now=started, reason=decision.reason)

    def _deadline(self, job: Job | None) -> float:
        """When this job's requests must be done (``time.monotonic()``): its timeout, or the worker's stop."""
        timeout = float(job.timeout) if job is not None and job.timeout and job.timeout > 0 else self.job_timeout_s
        deadline = time.monotonic() + max(timeout - BOOKKEEPING_S, 0.0)
        return deadline if self.stop_at is None else min(deadline, self.stop_at)

    def _deliver(
        self, destination: str, push: dict[str, Any], event_id: str, *, now: float, replay: bool, deadline: float
    ) -> Outcome | Skipped:
        """Translate and send; whatever goes wrong with the event becomes an outcome, never an exception."""
        target = self.destinations.get(destination)
        if target is None:
            return Outcome("failed", "destination-not-configured",
                           excerpt=f"this worker forwards to {', '.join(self.destinations) or 'nothing'}")  # fmt: skip
        try:
            return target.deliver(push, event_id=event_id, now=now, replay=replay, deadline=deadline)
        except Skipped as skipped:
            return skipped
        except InvalidEvent as invalid:
            return Outcome("failed", "invalid-event", excerpt=str(invalid))
        except RedisError:
            raise  # bookkeeping, not the event: let RQ retry the job once Redis is back
        except Exception as exc:  # a push the code cannot handle must end as a dead letter, not a crash
            return Outcome("failed", f"worker-error:{type(exc).__name__}", excerpt=_where(exc))


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised, without its message (which may quote a header or a URL). Pure."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/workers/" in f.filename or "/connector/" in f.filename] or frames
    if not ours:
        return type(exc).__name__
    last = ours[-1]
    return f"{type(exc).__name__} in {last.name} ({os.path.basename(last.filename)}:{last.lineno})"


_forwarder: Forwarder | None = None


def install(forwarder: Forwarder | None) -> None:
    """Make ``forwarder`` the one this process's jobs use (None: build from the environment on first use)."""
    global _forwarder
    _forwarder = forwarder


def reset_runtime() -> None:
    """Forget this process's forwarder (tests; or after the environment changed)."""
    install(None)


def current_forwarder() -> Forwarder:
    """The installed forwarder, or one built from the environment (for a worker that is not ours)."""
    global _forwarder
    if _forwarder is None:
        settings = Settings.from_env()
        redis = connect_to(settings)
        _forwarder = Forwarder.build(settings, redis)
    return _forwarder


def forward(destination: str, push: dict[str, Any], received_at: float, replay: bool = False) -> str | Retry:
    """The RQ job function (``connector.core.jobspec.FORWARD_FUNC``): see the module docstring.

    ``replay`` marks an operator's replay of a dead letter (MOOST takes those on its
    historical endpoint, like backfilled events).
    """
    job = get_current_job()
    result = current_forwarder().forward(destination, push, received_at, replay=replay, job=job)
    if job is not None and isinstance(result, str):
        job.meta[RESULT_META] = result
    return result


def _count_delivered(
    redis: Redis, destination: str, push: dict[str, Any], *, now: float, latency_s: float, job: Job | None
) -> None:
    """Mark ``job`` delivered and record the delivery in the shared metrics (read by ``connector.web.ops``).

    One round trip; best effort: a metrics write that fails must not fail, or repeat, a delivery.
    """
    pipe = redis.pipeline(transaction=False)
    if job is not None:  # RQ restores meta with the job, so a re-run sees the mark at no cost
        job.meta["delivered_at"] = now
        rq_adapter.save_meta(job, pipe)
    pipe.hincrby(keys.DELIVERY_PREFIX + destination, "delivered", 1)
    latency = keys.LATENCY_PREFIX + destination
    pipe.hincrby(latency, keys.latency_field(latency_s), 1)
    pipe.hincrbyfloat(latency, "sum", max(0.0, latency_s))
    pipe.hset(keys.HEALTH_PREFIX + destination, "last_ok", repr(now))
    minute = f"{keys.MINUTE_PREFIX}{destination}:{int(now // 60)}"
    pipe.incr(minute)
    pipe.expire(minute, keys.MINUTE_TTL_S)
    if device := device_of(push):
        event = push.get("event") or {}
        labels = push.get("labels") if isinstance(push.get("labels"), dict) else {}
        last = {"eventType": event.get("eventType"), "eventId": event.get("eventId"), "at": now,
                "name": (labels or {}).get("name", ""), "destination": destination}  # fmt: skip
        pipe.hset(keys.DEVICES_KEY, device, json.dumps(last))
    with contextlib.suppress(RedisError):
        pipe.execute()


def _count_failure(redis: Redis, destination: str, outcome: str, *, now: float, reason: str) -> None:
    """Record a retried or dead-lettered delivery (``outcome``); one round trip, best effort."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(keys.DELIVERY_PREFIX + destination, outcome, 1)
    pipe.hset(keys.HEALTH_PREFIX + destination, mapping={"last_error": repr(now), "last_error_reason": reason})
    with contextlib.suppress(RedisError):
        pipe.execute()


def _log(destination: str, event: dict[str, Any], decision: Decision, *, latency_s: float | None = None) -> None:
    """One JSON line per job: warning for a retry or a dead letter, info otherwise."""
    level = logging.WARNING if decision.verdict in ("dead-letter", "retry") else logging.INFO
    if not log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {}
    if decision.verdict == "delivered":
        extra["latency_s"] = latency_s
    elif decision.verdict == "skipped":
        extra["detail"] = decision.detail
    else:
        extra["status"] = decision.status
    if decision.verdict == "retry":
        extra.update(attempt=decision.attempt, delay_s=decision.delay_s)
    line = {
        "log": "delivery",
        "destination": destination,
        "eventId": event.get("eventId"),
        "eventType": event.get("eventType"),
        "outcome": "retrying" if decision.verdict == "retry" else decision.verdict,
        "reason": decision.reason,
        **{k: v for k, v in extra.items() if v is not None},
    }
    log.log(level, json.dumps(line, separators=(",", ":"), default=str))
