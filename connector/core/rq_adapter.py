"""The one seam between the connector and RQ's internals: every use of RQ beyond its public API.

Most of what the connector does with RQ is public API: ``Queue.enqueue``, ``Job.create(status=…)``,
``Job.fetch``, ``Job.to_dict``, ``Retry``, ``get_current_job``, ``job.meta``, the registries and
their ``cleanup``, ``RQScheduler``'s lock methods, ``SimpleWorker.prepare_execution`` and
``perform_job``. What follows is not. Each use says why it is needed and which RQ behaviour it
relies on; ``tests/connector/core/test_rq_adapter.py`` pins each behaviour against the installed
RQ, so an upgrade that changes one fails in CI, not in production (``rq >= 3.0, < 4``).

1. ``queued_job_fields``: the receiver writes RQ job hashes itself, inside the Lua script that
   dedupes the event (one round trip per push; ``connector.core.enqueue``). Relies on: RQ reads a
   hash whose fields are ``Job.to_dict()``'s, minus the empty ones (``Job.restore`` reads an absent
   field like an empty one), with ``data`` uncompressed.
2. ``save_meta``: a delivery is marked on the job (``meta.delivered_at``) in the same round trip as
   its metrics. ``Job.save_meta`` takes no pipeline. Relies on: ``meta`` is the hash field
   ``meta``, written with the job's serializer.
3. ``dequeue_job_id``: the dispatcher takes job ids, not jobs, and only when a job thread is free.
   ``Queue.lmove`` is RQ's own BLMOVE into the intermediate queue, a classmethod without docs.
4. ``JobThreadWorker``: RQ's in-process worker, one per job thread (see its docstring). Relies on:
   RQ's cleanup recovering an abandoned job only when it is marked ``started``; the order in which
   ``perform_job`` calls ``prepare_job_execution``, the job, and ``handle_job_success`` or
   ``handle_job_retry``; ``handle_job_success`` calling ``increment_successful_job_count`` inside
   its MULTI, without saving ``meta``, for the ``Job`` object the job function got from
   ``get_current_job`` (so the function can leave its result there for the hook); RQ building
   those transactions from the job's state in memory (so a transaction lost to a dropped
   connection can be built again); ``_set_connection`` being where RQ's worker raises its
   connection's socket timeout.
5. ``SharedScheduler``: RQ's scheduler driven one step at a time on the process's shared pool
   (RQ's own forks a process with a pool of its own and dies for good on a Redis error). Relies on:
   ``RQScheduler`` reaching Redis only through its ``connection`` property.
6. ``clean``: registry upkeep for one queue, as RQ's worker does it, plus the intermediate queue's
   "first seen" marks, which RQ sets and never removes, and the jobs RQ 3 would drop from its
   started registry because their status was written ahead of a transaction that never ran
   (``reclaim_abandoned``). Relies on: RQ's cleanup retrying exactly the ``started`` jobs.

RQ's key names are not here: ``connector.core.keys`` takes them from RQ's classes, which read
``RQ_KEY_PREFIX`` (``rq.defaults``) when RQ is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry, clean_registries
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty
from rq.worker_registration import clean_worker_registry

from connector.core.redis_conn import while_redis_recovers

# ---- 1. job hashes ---------------------------------------------------------------------------


def queued_job_fields(func: str, *, leave_out: frozenset[str], **options: Any) -> tuple[bytes, ...]:
    """The hash RQ saves for a job of ``func`` queued with ``options`` (``Job.create``'s), as flat
    field/value pairs, without the fields in ``leave_out`` (written per job) and without empty ones
    (RQ reads an absent field as empty)."""
    # The client is never contacted: Job.create only needs one to exist.
    job = Job.create(func, connection=Redis(), id="template", status=JobStatus.QUEUED, **options)
    job.enqueued_at = job.created_at  # what Queue.enqueue_job sets before saving
    pairs: list[bytes] = []
    for key, value in job.to_dict().items():
        if key in leave_out or value == "":
            continue
        pairs.append(key.encode())
        pairs.append(_encode(value))
    return tuple(pairs)


def _encode(value: object) -> bytes:
    """A hash value encoded the way redis-py encodes it (``str`` subclasses such as enums by value)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return str.encode(value)
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


# ---- 2. meta in a pipeline -------------------------------------------------------------------


def save_meta(job: Job, pipeline: Pipeline) -> None:
    """``job.save_meta()``, as one command of ``pipeline``."""
    pipeline.hset(job.key, "meta", job.serializer.dumps(job.meta))


# ---- 3. dequeue ------------------------------------------------------------------------------


def dequeue_job_id(redis: Redis, queue_key: str, timeout_s: int | None) -> str | None:
    """The next job id of ``queue_key``, moved to RQ's intermediate queue (RQ's BLMOVE); None when
    the queue stayed empty for ``timeout_s`` (None: do not block)."""
    try:
        found = Queue.lmove(redis, queue_key, timeout_s)
    except DequeueTimeout:
        return None
    if found is None:
        return None
    raw = found[1]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


# ---- 4. the job thread's worker --------------------------------------------------------------


class NoDeathPenalty(BaseDeathPenalty):
    """No SIGALRM timer: only the main thread receives signals, and injecting an exception into a
    thread mid-request could corrupt a pooled connection. Jobs keep to their deadline instead."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


SuccessHook = Callable[[Pipeline, Job], None]
"""Called with RQ's success transaction (a MULTI) and the job, to add commands to it."""


class JobThreadWorker(SimpleWorker):
    """RQ's in-process worker, one per job thread, all sharing the process's worker name.

    Jobs, registries, results and retries stay RQ's. What differs, each for a reason:

    * ``prepare_execution`` records the execution, marks the job ``started`` and takes it off RQ's
      intermediate queue (dropping RQ's stranded-job mark) in **one** transaction. RQ's own worker
      marks the job started later, when the job begins; a worker killed in between would leave a
      job that is in no queue, and that RQ's cleanup skips because it recovers only ``started``
      jobs (RQ 3). With the one transaction, a killed worker's job is always found: in the
      intermediate queue (not yet started) or in the started registry (started).
    * ``on_success`` adds commands to the transaction in which RQ files the success.
    * RQ's success and retry handling wait out a short Redis outage (``while_redis_recovers``)
      rather than leave the job to be re-run.
    * no SIGALRM death penalty (``NoDeathPenalty``);
    * the execution expires ``execution_margin_s`` after the job's timeout (RQ: timeout + 60 s);
    * the shared pool's socket timeout is left alone (RQ raises it to its worker's dequeue wait,
      which only the dispatcher's own connection needs).
    """

    death_penalty_class = NoDeathPenalty

    def __init__(
        self, *args: Any, execution_margin_s: int, on_success: SuccessHook | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._execution_margin_s = execution_margin_s
        self._on_success = on_success
        self._succeeding: Job | None = None  # the job whose success RQ is filing

    def _set_connection(self, connection: Redis) -> Redis:
        return connection

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        timeout = job.timeout if job.timeout and job.timeout > 0 else Queue.DEFAULT_TIMEOUT
        return int(timeout) + self._execution_margin_s

    def prepare_execution(self, job: Job) -> Execution:
        intermediate = IntermediateQueue(Queue.redis_queue_namespace_prefix + job.origin, self.connection)
        with self.connection.pipeline() as pipeline:
            execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipeline, worker_name=self.name)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.lrem(intermediate.key, 1, job.id)
            # RQ's cleanup marks a job it sees in the intermediate queue and never unmarks it: a
            # stale mark would have a later, healthy pass through the queue taken for a stranding.
            pipeline.delete(intermediate.get_first_seen_key(job.id))
            pipeline.execute()
        self.executions[execution.id] = execution
        return execution

    def perform(self, job: Job, queue: Queue) -> None:
        """Run ``job`` from ``queue`` through RQ's lifecycle, as ``SimpleWorker.execute_job`` does."""
        self.perform_job(job, queue, self.prepare_execution(job))

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        self._succeeding = job
        try:
            while_redis_recovers(lambda: super(JobThreadWorker, self).handle_job_success(
                job, queue, started_job_registry, execution
            ))  # fmt: skip
        finally:
            self._succeeding = None

    def handle_job_retry(
        self, job: Job, queue: Queue, retry: Retry, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        retries = job.number_of_retries

        def attempt() -> None:
            job.number_of_retries = retries  # RQ counts the retry while building the transaction
            super(JobThreadWorker, self).handle_job_retry(job, queue, retry, started_job_registry, execution)

        while_redis_recovers(attempt)

    def increment_successful_job_count(self, pipeline: Pipeline | None = None) -> None:
        super().increment_successful_job_count(pipeline=pipeline)
        if pipeline is not None and self._succeeding is not None and self._on_success is not None:
            self._on_success(pipeline, self._succeeding)  # inside RQ's success transaction


# ---- 5. the scheduler ------------------------------------------------------------------------


class SharedScheduler(RQScheduler):
    """RQ's scheduler on the process's shared pool, stepped by the caller (``step``)."""

    def __init__(self, queue_name: str, *, connection: Redis, serializer: Any) -> None:
        super().__init__([queue_name], connection=connection, serializer=serializer, logging_level="WARNING")
        self._shared = connection

    @property
    def connection(self) -> Redis:
        return self._shared

    def step(self) -> bool:
        """One step: hold (or take over) the lock, queue the jobs that are due; True on taking the lock."""
        took = False
        if self.acquired_locks:
            self.heartbeat()  # refreshes the lock; forgets it if another process took it over
        if not self.acquired_locks and self.acquire_locks():
            self.register_birth()
            took = True
        if self.acquired_locks:
            self.enqueue_scheduled_jobs()
        return took

    def release(self) -> None:
        """Hand the lock over, if held."""
        if self.acquired_locks:
            self.release_locks()
            self.register_death()


# ---- 6. registry upkeep ----------------------------------------------------------------------

_SETTLED = {JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def reclaim_abandoned(queue: Queue) -> list[str]:
    """Mark ``started`` each job whose execution expired in the started registry while its hash says
    ``queued`` or ``scheduled`` and no queue or registry holds it; their ids.

    RQ 3's cleanup retries an abandoned job only when its status is ``started``. But RQ writes a
    retry's ``scheduled`` status at once, ahead of the transaction that schedules the job and ends
    its execution (``Job._handle_retry_result``, ``Job.retry``): a worker killed between the two, or
    a Redis outage longer than the worker waits out, leaves a job that is in no queue and no
    registry but the started one, which RQ's cleanup would then drop. Marked ``started``, it is
    retried like any job whose worker died.
    """
    registry = queue.started_job_registry
    expired = list(dict.fromkeys(registry.get_expired_job_ids()))
    if not expired:
        return []
    redis = queue.connection
    with redis.pipeline(transaction=False) as pipe:
        for job_id in expired:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
    candidates = [
        job_id for job_id, status in zip(expired, statuses, strict=True)
        if status is not None and status.decode() not in _SETTLED
    ]  # fmt: skip
    if not candidates:
        return []
    scheduled = queue.scheduled_job_registry.key
    with redis.pipeline(transaction=False) as pipe:
        for job_id in candidates:
            pipe.lpos(queue.key, job_id)
            pipe.lpos(queue.intermediate_queue_key, job_id)
            pipe.zscore(scheduled, job_id)
        found = pipe.execute()
    orphans = [job_id for n, job_id in enumerate(candidates) if found[3 * n : 3 * n + 3] == [None, None, None]]
    with redis.pipeline(transaction=False) as pipe:
        for job_id in orphans:
            pipe.hset(Job.key_for(job_id), "status", JobStatus.STARTED.value)
        pipe.execute()
    return orphans


def clean(queue: Queue, worker: SimpleWorker) -> list[str]:
    """RQ's upkeep of ``queue``: expired finished and failed entries go; a job whose execution
    expired (its worker died) or that sat in the intermediate queue for over a minute is retried
    (or failed when it has no retries left, filed with ``worker``); dead workers are unregistered.
    The ids of jobs ``reclaim_abandoned`` saved from being dropped."""
    reclaimed = reclaim_abandoned(queue)
    clean_registries(queue)
    intermediate = queue.intermediate_queue
    before = set(intermediate.get_job_ids())
    intermediate.cleanup(worker, queue)
    gone = before - set(intermediate.get_job_ids())
    if gone:  # RQ leaves its "first seen" marks behind; a stale one would strand the job's next pass
        queue.connection.delete(*(intermediate.get_first_seen_key(job_id) for job_id in gone))
    clean_worker_registry(queue)
    return reclaimed
