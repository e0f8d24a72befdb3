"""One worker process: RQ's job lifecycle, several jobs at a time, recovery that needs no traffic.

A forward waits on its downstream (50 ms and more) for a few ms of CPU, so jobs run on
``threads`` threads of one process rather than in a process each: concurrency then costs a
thread, not a Redis connection and 15 MB. Three kinds of thread share a small Redis pool:

* the **dispatcher** (the main thread) waits for a free job thread, then takes one job id off
  the queue with RQ's own dequeue (``BLMOVE`` into RQ's intermediate queue), on a connection of
  its own, blocking at most ``DEQUEUE_WAIT_S``, and hands it over;
* **job threads** run each job through RQ's ``SimpleWorker.perform_job`` (execution record,
  started registry, the job, then RQ's success, ``Retry`` or failure handling), so job hashes,
  registries and retries stay exactly RQ's. Where RQ has no public seam for what the runner
  needs, it goes through ``connector.core.rq_adapter`` (``JobThreadWorker`` says what differs);
  the job ledger counts each job's outcome in the transaction that files its success (``settle``);
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
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import WorkerStatus

from connector.core.jobspec import JobSerializer
from connector.core.keys import JOB_LEDGER
from connector.core.rq_adapter import JobThreadWorker, SharedScheduler, dequeue_job_id
from workers.jobs import RESULT_META, Forwarder
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


def settle(pipeline: Pipeline, job: Job) -> None:
    """Count ``job``'s outcome in the job ledger, as part of RQ's transaction filing its success."""
    pipeline.eval(SETTLE_LUA, 2, job.key, JOB_LEDGER, ledger_field(job.meta.get(RESULT_META)))


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
        self.scheduler = SharedScheduler(queue_name, connection=redis, serializer=JobSerializer)
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
        return dequeue_job_id(self.dequeue_redis, self.queue.key, None if self.burst else DEQUEUE_WAIT_S)

    # ---- job threads -------------------------------------------------------------------------

    def _job_worker(self) -> JobThreadWorker:
        return JobThreadWorker(
            [self.queue],
            name=self.name,
            connection=self.redis,
            serializer=JobSerializer,
            worker_ttl=WORKER_TTL_S,
            prepare_for_work=False,
            execution_margin_s=EXECUTION_MARGIN_S,
            on_success=settle,
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
            worker.perform(job, self.queue)
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
        if self.scheduler.step():
            log.info("worker %s: running the scheduler for %s", self.name, self.queue.name)

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
            self.scheduler.release()
            self.worker.register_death()
        except RedisError as exc:
            log.warning("worker %s: could not deregister (%s); the registration expires", self.name,
                        type(exc).__name__)  # fmt: skip
