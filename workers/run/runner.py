"""One worker process: RQ's job lifecycle, several jobs at a time, recovery that needs no traffic.

A forward waits on its downstream (50 ms and more) for a few ms of CPU, so jobs run on
``threads`` threads of one process rather than in a process each: concurrency then costs a
thread, not a Redis connection and 15 MB. Three kinds of thread share a small Redis pool:

* the **dispatcher** (the main thread) waits for a free job thread, then takes one job id off
  the queue with RQ's own dequeue (``Queue.lmove``: ``BLMOVE`` into RQ's intermediate queue),
  on a connection of its own, blocking at most ``DEQUEUE_WAIT_S``, and hands it over;
* **job threads** run each job through RQ's ``SimpleWorker.perform_job`` (execution record,
  started registry, the job, then RQ's success, ``Retry`` or failure handling), so job hashes,
  registries and retries stay exactly RQ's (``JobThreadWorker`` says what differs);
* the **supervisor** ticks every second whatever the traffic: it drives RQ's scheduler (takes
  its lock when free, refreshes it, queues the retries that are due), heartbeats the worker,
  and every ``MAINTENANCE_INTERVAL_S`` runs ``workers.run.maintenance``. A Redis error is logged
  and the tick retried a second later, so a Redis restart or failover stops nothing for good.

SIGTERM or SIGINT stop the dispatcher within ``DEQUEUE_WAIT_S``; jobs in flight get until
``STOP_GRACE_S`` after the signal (their requests are cut to fit, or they are retried later);
then the scheduler lock is released and the process exits, inside Heroku's 30 s.
"""

from __future__ import annotations

import logging
import os
import queue as queues
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty
from rq.worker import WorkerStatus

from connector.core.jobspec import JobSerializer
from connector.core.keys import JOB_LEDGER
from workers.jobs import Forwarder, while_redis_recovers
from workers.run import maintenance

log = logging.getLogger("workers")

DEQUEUE_WAIT_S = 1
"""Longest block on an empty queue: how soon the dispatcher notices a stop request."""

TICK_S = 1.0
"""The supervisor's period; also RQ's scheduler interval (a due retry waits at most this)."""

HEARTBEAT_S = 10.0
"""How often the worker's RQ registration is refreshed (it expires ``WORKER_TTL_S`` + 60 s later)."""

WORKER_TTL_S = 30

MAINTENANCE_INTERVAL_S = 10.0
"""How often registries are cleaned (RQ's default is 10 min): an abandoned job is found within
this of its execution expiring, and a stranded one within this of RQ's 60 s intermediate limit."""

STOP_GRACE_S = 20.0
"""After SIGTERM, jobs in flight have this long; Heroku sends SIGKILL at 30 s."""

EXECUTION_MARGIN_S = 30
"""A job's execution record expires this long after its timeout: if the process dies, the job is
seen as abandoned (and retried) that soon, not after RQ's job timeout + 60 s. The margin covers
what a live job may still spend after its deadline: waiting out a Redis outage (8 s) and for a
pooled connection, so a slow but living job is not taken for a dead one."""

SETTLE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HSETNX', KEYS[1], 'dt_settled', ARGV[1]) == 1 then
  return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
return 0
"""
"""Counts a job's outcome in the ledger once per job, however often RQ files its success (a job
re-run after its worker seemed dead, a transaction retried after a dropped reply). Sent with EVAL
inside RQ's MULTI: a script cache emptied by a Redis restart cannot make it fail."""

_EXIT_AFTER_GRACE_S = 1.0
"""How long past the grace the process waits for a job thread that ignores its deadline (the
dyno's supervisor SIGKILLs what is left 3 s past the grace)."""


class _NoDeathPenalty(BaseDeathPenalty):
    """No SIGALRM timer: only the main thread receives signals, and injecting an exception into a
    thread mid-request could corrupt a pooled connection. Jobs keep to their deadline instead
    (``Forwarder``: every request is cut to fit the job's timeout)."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class JobThreadWorker(SimpleWorker):
    """RQ's in-process worker, one per job thread, all sharing the process's worker name.

    Differences from ``SimpleWorker``, each for a reason:

    * ``prepare_execution`` also takes the job off RQ's intermediate queue (and drops RQ's
      stranded-job mark), in the same transaction that records its execution, so a job is never
      counted in both places;
    * the job ledger (``connector.core.keys.JOB_LEDGER``) counts the job's outcome inside the
      transaction in which RQ files the success, once per job (``SETTLE_LUA``);
    * RQ's success and retry handling wait out a short Redis outage (``while_redis_recovers``)
      rather than leave the job to be re-run;
    * no SIGALRM death penalty (``_NoDeathPenalty``);
    * the execution expires ``EXECUTION_MARGIN_S`` after the job's timeout;
    * the shared pool's socket timeout is left alone (RQ would raise it to its 7-minute
      dequeue wait, which only the dispatcher's own connection needs).
    """

    death_penalty_class = _NoDeathPenalty

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settling: tuple[str, str] | None = None  # (job key, ledger field) while RQ files a success

    def _set_connection(self, connection: Redis) -> Redis:
        return connection

    def get_heartbeat_ttl(self, job: Job) -> int:
        timeout = job.timeout if job.timeout and job.timeout > 0 else Queue.DEFAULT_TIMEOUT
        return int(timeout) + EXECUTION_MARGIN_S

    def prepare_execution(self, job: Job) -> Execution:
        intermediate = IntermediateQueue(Queue.redis_queue_namespace_prefix + job.origin, self.connection)
        with self.connection.pipeline() as pipeline:
            ttl = self.get_heartbeat_ttl(job)
            self.execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
            pipeline.lrem(intermediate.key, 1, job.id)
            # RQ's cleanup marks a job it sees in the intermediate queue and never unmarks it: a
            # stale mark would have a later, healthy pass through the queue taken for a stranding.
            pipeline.delete(intermediate.get_first_seen_key(job.id))
            pipeline.execute()
        return self.execution

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        # What the job returned (RQ keeps it on the job before filing the success).
        self._settling = (job.key, ledger_field(getattr(job, "_result", None)))
        execution = self.execution

        def attempt() -> None:
            self.execution = execution  # RQ clears it while building the transaction
            super(JobThreadWorker, self).handle_job_success(job, queue, started_job_registry)

        try:
            while_redis_recovers(attempt)
        finally:
            self._settling = None

    def handle_job_retry(
        self, job: Job, queue: Queue, retry: Retry, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        retries = job.number_of_retries

        def attempt() -> None:
            job.number_of_retries = retries  # RQ counts the retry while building the transaction
            super(JobThreadWorker, self).handle_job_retry(job, queue, retry, started_job_registry, execution)

        while_redis_recovers(attempt)

    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        super().increment_successful_job_count(pipeline=pipeline)
        if pipeline is not None and self._settling is not None:  # inside RQ's success transaction
            job_key, field = self._settling
            pipeline.eval(SETTLE_LUA, 2, job_key, JOB_LEDGER, field)


def ledger_field(result: object) -> str:
    """The job ledger's field for what ``workers.jobs.forward`` returned. Pure."""
    text = result if isinstance(result, str) else ""
    if text == "delivered":
        return "delivered"
    if text.startswith("skipped:"):
        return "skipped"
    if text.startswith("dead-letter:"):
        return "dead_lettered"
    return "finished"


class _Scheduler(RQScheduler):
    """RQ's scheduler, run by the supervisor thread on the process's shared pool (RQ's own
    would fork a process with a pool of its own, and die for good on a Redis error)."""

    def __init__(self, queue_name: str, *, connection: Redis) -> None:
        super().__init__([queue_name], connection=connection, serializer=JobSerializer, logging_level="WARNING")
        self._shared = connection

    @property
    def connection(self) -> Redis:
        return self._shared


class Runner:
    """The worker process's loop (``run``): see the module docstring."""

    def __init__(
        self,
        *,
        queue_name: str,
        redis: Redis,
        dequeue_redis: Redis,
        forwarder: Forwarder,
        threads: int,
        burst: bool = False,
    ) -> None:
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis, serializer=JobSerializer)
        self.forwarder = forwarder
        self.threads = threads
        self.burst = burst
        self.name = uuid4().hex
        self.worker = self._job_worker()  # the registered identity; also used for RQ's cleanups
        self.worker.hostname, self.worker.pid = socket.gethostname(), os.getpid()
        self.scheduler = _Scheduler(queue_name, connection=redis)
        self.dequeue_redis = dequeue_redis
        self._free = threading.Semaphore(threads)
        self._work_items: queues.SimpleQueue[str | None] = queues.SimpleQueue()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._halt = threading.Event()  # stops the supervisor, after the job threads
        self._stop_at: float | None = None
        self._redis_down_since: float | None = None

    # ---- the dispatcher ----------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, with ``burst``, until the queue is empty); the exit status."""
        previous = self._install_signal_handlers()
        try:
            refused = self._register()
            return refused if refused is not None else self._work()
        finally:
            self._restore(previous)

    def _work(self) -> int:
        job_threads = [
            threading.Thread(target=self._job_thread, name=f"job-{n}", daemon=True) for n in range(self.threads)
        ]
        supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        try:
            if self.burst:
                self._tick()  # queue the retries already due before looking at the queue
            for thread in job_threads:
                thread.start()
            supervisor.start()
            log.info("worker %s: %d job threads on queue %s", self.name, self.threads, self.queue.name)
            self._dispatch()
        finally:
            clean = self._wait_for_jobs()
            for _ in job_threads:
                self._work_items.put(None)
            self._halt.set()
            supervisor.join(timeout=1.0 if self._stop_at is not None else 5.0)
            self._release()
        return 0 if clean else 1

    def _register(self) -> int | None:
        """Register with RQ once Redis answers (waiting for it); an exit status if the run must not go on."""
        pause = 0.5
        while not self._stopping.is_set():
            try:
                server = str(self.redis.info("server")["redis_version"])
                if tuple(int(part) for part in server.split(".")[:2]) < (6, 2):
                    log.error("Redis %s is too old: RQ's dequeue needs BLMOVE (Redis 6.2 or newer)", server)
                    return 1
                self.worker.register_birth()
                self._redis_back()
                return None
            except RedisError as exc:
                self._redis_failed(exc)
                self._stopping.wait(pause)
                pause = min(pause * 2, 5.0)
        return 0  # stopped before it started

    def _dispatch(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            if not self._free.acquire(timeout=0.5):
                continue
            try:
                job_id = self._next_job_id()
            except RedisError as exc:
                self._free.release()
                log.warning("worker %s: dequeue failed (%s); retrying in %.1f s", self.name, type(exc).__name__,
                            backoff)  # fmt: skip
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            if job_id is None:
                self._free.release()
                if self.burst:
                    with self._lock:
                        idle = self._in_flight == 0
                    if idle:
                        return
                    self._stopping.wait(0.02)
                continue
            with self._lock:
                self._in_flight += 1
            self._work_items.put(job_id)

    def _next_job_id(self) -> str | None:
        """The next job id, moved to RQ's intermediate queue; None when the queue stayed empty."""
        try:
            found = Queue.lmove(self.dequeue_redis, self.queue.key, None if self.burst else DEQUEUE_WAIT_S)
        except DequeueTimeout:
            return None
        if found is None:
            return None
        raw = found[1]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    # ---- job threads -------------------------------------------------------------------------

    def _job_worker(self) -> JobThreadWorker:
        return JobThreadWorker(
            [self.queue],
            name=self.name,
            connection=self.redis,
            serializer=JobSerializer,
            worker_ttl=WORKER_TTL_S,
            prepare_for_work=False,
        )

    def _job_thread(self) -> None:
        worker = self._job_worker()
        while (job_id := self._work_items.get()) is not None:
            try:
                self._perform(worker, job_id)
            finally:
                with self._lock:
                    self._in_flight -= 1
                self._free.release()

    def _perform(self, worker: JobThreadWorker, job_id: str) -> None:
        try:
            job = Job.fetch(job_id, connection=self.redis, serializer=JobSerializer)
        except NoSuchJobError:
            # RQ's own dequeue skips such an id too; its cleanup drops it from the intermediate
            # queue, and the job ledger shows the loss as unaccounted.
            log.warning("worker %s: job %s has no job hash; skipped", self.name, job_id)
            return
        except RedisError as exc:
            log.warning("worker %s: could not read job %s (%s); maintenance will requeue it",
                        self.name, job_id, type(exc).__name__)  # fmt: skip
            return
        try:
            worker.prepare_execution(job)
            worker.perform_job(job, self.queue)
        except RedisError as exc:
            log.warning("worker %s: Redis failed around job %s (%s); maintenance will retry it",
                        self.name, job_id, type(exc).__name__)  # fmt: skip
        except Exception:
            log.exception("worker %s: job %s could not be run; maintenance will retry it", self.name, job_id)

    def _wait_for_jobs(self) -> bool:
        """Wait for the jobs in flight (bounded after a stop); False if some were left running."""
        while True:
            with self._lock:
                left = self._in_flight
            if left == 0:
                return True
            if self._stop_at is not None and time.monotonic() > self._stop_at + _EXIT_AFTER_GRACE_S:
                log.warning("worker %s: %d job(s) still running at exit; RQ will retry them", self.name, left)
                return False
            time.sleep(0.02)

    # ---- the supervisor ----------------------------------------------------------------------

    def _supervise(self) -> None:
        next_heartbeat = next_maintenance = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            try:
                self._tick()
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + HEARTBEAT_S
                if now >= next_maintenance:
                    maintenance.run(self.redis, self.queue, self.worker, now=time.time())
                    next_maintenance = now + MAINTENANCE_INTERVAL_S
                self._redis_back()
            except RedisError as exc:
                self._redis_failed(exc)
            except Exception:
                log.exception("worker %s: supervisor tick failed; trying again", self.name)
            self._halt.wait(TICK_S)

    def _heartbeat(self) -> None:
        """Refresh the worker's RQ registration and the state ``rq info`` shows."""
        with self._lock:
            busy = self._in_flight > 0
        with self.redis.pipeline() as pipeline:
            self.worker.heartbeat(pipeline=pipeline)
            self.worker.set_state(WorkerStatus.BUSY if busy else WorkerStatus.IDLE, pipeline=pipeline)
            pipeline.execute()

    def _tick(self) -> None:
        """RQ's scheduler, one step: hold (or take over) the lock, queue the retries that are due."""
        scheduler = self.scheduler
        if scheduler.acquired_locks:
            scheduler.heartbeat()  # refreshes the lock; forgets it if another process took it over
        if not scheduler.acquired_locks and scheduler.acquire_locks():
            scheduler.register_birth()
            log.info("worker %s: running the scheduler for %s", self.name, self.queue.name)
        if scheduler.acquired_locks:
            scheduler.enqueue_scheduled_jobs()

    def _redis_failed(self, exc: RedisError) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("worker %s: Redis unavailable (%s); retrying every %.0f s", self.name,
                        type(exc).__name__, TICK_S)  # fmt: skip

    def _redis_back(self) -> None:
        if self._redis_down_since is not None:
            log.warning("worker %s: Redis back after %.1f s", self.name, time.monotonic() - self._redis_down_since)
            self._redis_down_since = None

    # ---- stopping ----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop(reason=signal.Signals(signum).name)

    def stop(self, *, reason: str = "stop") -> None:
        """Stop taking jobs; jobs in flight have ``STOP_GRACE_S`` (idempotent)."""
        if self._stopping.is_set():
            return
        self._stop_at = time.monotonic() + STOP_GRACE_S
        self.forwarder.stop_at = self._stop_at
        self._stopping.set()
        log.info("worker %s: %s: finishing %d job(s) in flight, then exiting", self.name, reason, self._in_flight)

    def _release(self) -> None:
        """Hand the scheduler lock over and deregister (best effort: both expire anyway)."""
        try:
            if self.scheduler.acquired_locks:
                self.scheduler.release_locks()
                self.scheduler.register_death()
            self.worker.register_death()
        except RedisError as exc:
            log.warning("worker %s: could not deregister (%s); the registration expires", self.name,
                        type(exc).__name__)  # fmt: skip
