"""The RQ behaviours ``connector.core.rq_adapter`` relies on, pinned against the installed RQ.

Each test names the adapter's use it guards (its docstring's numbers). When an RQ release changes
one of these behaviours, the test fails here, in CI, rather than jobs going missing in production.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.defaults import RQ_KEY_PREFIX
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from connector.core import keys
from connector.core.enqueue import Enqueuer
from connector.core.jobspec import VARYING_FIELDS, JobSerializer, JobTemplate, job_payload
from connector.core.redis_conn import connect
from connector.core.rq_adapter import (
    JobThreadWorker,
    SharedScheduler,
    clean,
    dequeue_job_id,
    queued_job_fields,
    save_meta,
)
from tests.support.helpers import ROOT, SECRET

QUEUE = "dt-forward"


def remember_in_meta(value: str) -> str:
    """A job that leaves ``value`` on its own meta, in memory, as ``workers.jobs.forward`` does."""
    job = get_current_job()
    assert job is not None
    job.meta["in_memory"] = value
    return value


def fail() -> None:
    raise RuntimeError("boom")


def thread_worker(redis: Redis, queue: Queue, **options: Any) -> JobThreadWorker:
    return JobThreadWorker(
        [queue], connection=redis, serializer=JobSerializer, prepare_for_work=False, execution_margin_s=30, **options
    )


def queued_job(redis: Redis, queue: Queue, func: Any = remember_in_meta, *args: Any, job_id: str = "j1") -> Job:
    queue.enqueue(func, *args, job_id=job_id)
    assert dequeue_job_id(redis, queue.key, None) == job_id  # as the dispatcher takes it
    return Job.fetch(job_id, connection=redis, serializer=JobSerializer)


# ---- 1. job hashes written by the receiver's script -------------------------------------------


def test_rq_restores_the_hash_the_receiver_writes_as_the_job_rq_would_have_queued(redis: Redis):
    template = JobTemplate.from_rq(queue_name=QUEUE, timeout_s=20)
    enqueuer = Enqueuer(redis, queue_name=QUEUE, destinations=("log",), dedupe_ttl_s=3600, template=template)
    assert enqueuer.enqueue("e1", b'{"event":{"eventId":"e1"}}', received_at=1_700_000_000.5)
    ours = Job.fetch("log-e1", connection=redis, serializer=JobSerializer)
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    theirs = queue.enqueue_call(
        ours.func_name, args=ours.args, timeout=ours.timeout, result_ttl=ours.result_ttl,
        failure_ttl=ours.failure_ttl, retry=None, job_id="rq-made", description=ours.description,
    )  # fmt: skip
    theirs = Job.fetch("rq-made", connection=redis, serializer=JobSerializer)
    assert ours.get_status() == JobStatus.QUEUED and ours.origin == QUEUE
    assert (ours.func_name, ours.args, ours.timeout) == (theirs.func_name, theirs.args, theirs.timeout)
    assert ours.retries_left == 3 and ours.retry_intervals == [10, 60, 300]
    assert ours.created_at is not None and ours.ended_at is None  # absent fields read as empty
    assert ours.data == job_payload("log", b'{"event":{"eventId":"e1"}}', 1_700_000_000.5)  # uncompressed data
    # Every field RQ writes for a queued job is one the receiver writes (bar the empty ones).
    written = {field.decode() for field in redis.hkeys(keys.JOB_PREFIX + "log-e1")}
    rq_fields = {field.decode() for field in redis.hkeys(keys.JOB_PREFIX + "rq-made") if redis.hget(
        keys.JOB_PREFIX + "rq-made", field) != b""}  # fmt: skip
    assert rq_fields - {"retries_left", "retry_intervals"} <= written


def test_queued_job_fields_leave_out_what_varies_and_nothing_else():
    fields = queued_job_fields("workers.jobs.forward", args=("log", {}, 0.0), serializer=JobSerializer, origin=QUEUE,
                               leave_out=VARYING_FIELDS)  # fmt: skip
    assert dict(zip(fields[::2], fields[1::2], strict=True)) == {b"origin": QUEUE.encode(), b"status": b"queued"}
    created = queued_job_fields("f", args=(), serializer=JobSerializer, origin=QUEUE, leave_out=frozenset())
    assert set(created[::2]) >= {b"data", b"description", b"created_at", b"enqueued_at", b"status"}


# ---- 2. meta in a pipeline ----------------------------------------------------------------------


def test_save_meta_in_a_pipeline_writes_what_rqs_save_meta_writes(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queue.enqueue(remember_in_meta, "x", job_id="m1")
    job.meta["delivered_at"] = 1.5
    job.save_meta()
    rqs = redis.hget(job.key, "meta")
    redis.hdel(job.key, "meta")
    with redis.pipeline(transaction=False) as pipe:
        save_meta(job, pipe)
        pipe.execute()
    assert redis.hget(job.key, "meta") == rqs
    assert Job.fetch("m1", connection=redis, serializer=JobSerializer).meta == {"delivered_at": 1.5}


# ---- 3. dequeue ---------------------------------------------------------------------------------


def test_dequeue_moves_the_id_to_rqs_intermediate_queue(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    queue.enqueue(remember_in_meta, "x", job_id="d1")
    assert dequeue_job_id(redis, queue.key, None) == "d1"
    assert redis.lrange(queue.intermediate_queue_key, 0, -1) == [b"d1"]
    assert dequeue_job_id(redis, queue.key, None) is None
    assert dequeue_job_id(redis, queue.key, 1) is None  # blocks a second, then gives up


# ---- 4. the job thread's worker -----------------------------------------------------------------


def test_rqs_cleanup_recovers_only_jobs_marked_started(redis: Redis):
    """Why ``prepare_execution`` marks the job started: RQ 3 drops a queued job whose execution
    expired from its started registry without retrying it (the job is then in no queue)."""
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queued_job(redis, queue)
    job.retries_left = 3
    job.save()
    worker = SimpleWorker([queue], connection=redis, serializer=JobSerializer)
    execution = worker.prepare_execution(job)  # RQ's own: the execution recorded, the job still queued
    redis.lrem(queue.intermediate_queue_key, 1, job.id)
    started = StartedJobRegistry(queue=queue)
    redis.zadd(started.key, {execution.composite_key: time.time() - 1})
    started.cleanup()
    assert job.id not in ScheduledJobRegistry(queue=queue).get_job_ids() and job.id not in queue.get_job_ids()
    assert Job.fetch(job.id, connection=redis, serializer=JobSerializer).get_status() == JobStatus.QUEUED


def test_prepare_execution_marks_started_and_leaves_the_intermediate_queue_in_one_step(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queued_job(redis, queue)
    mark = queue.intermediate_queue.get_first_seen_key(job.id)
    redis.set(mark, "1")
    worker = thread_worker(redis, queue)
    commands: list[list[Any]] = []
    original = Pipeline.execute

    def recorded(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        commands.append([c[0][0] for c in self.command_stack])
        return original(self, *args, **kwargs)

    Pipeline.execute = recorded  # type: ignore[method-assign]
    try:
        execution = worker.prepare_execution(job)
    finally:
        Pipeline.execute = original  # type: ignore[method-assign]
    assert len(commands) == 1, "one transaction"
    assert Job.fetch(job.id, connection=redis, serializer=JobSerializer).get_status() == JobStatus.STARTED
    assert job.id in StartedJobRegistry(queue=queue)
    assert redis.llen(queue.intermediate_queue_key) == 0 and not redis.exists(mark)
    assert redis.ttl(execution.key) > 20  # the job's timeout (180 s by default) plus the margin


def test_the_success_hook_runs_inside_rqs_success_transaction_and_meta_is_not_saved(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queued_job(redis, queue, remember_in_meta, "x")
    seen: list[tuple[bool, str]] = []

    def hook(pipeline: Pipeline, succeeded: Job) -> None:
        seen.append((pipeline.explicit_transaction, succeeded.meta.get("in_memory", "")))
        pipeline.set("hooked", succeeded.id)

    thread_worker(redis, queue, on_success=hook).perform(job, queue)
    assert seen == [(True, "x")]  # in the MULTI; the job function's own Job object
    assert redis.get("hooked") == b"j1"
    stored = Job.fetch("j1", connection=redis, serializer=JobSerializer)
    assert stored.get_status() == JobStatus.FINISHED
    assert "in_memory" not in stored.meta  # RQ does not save meta when it files a success


def test_a_failing_job_is_filed_by_rq_and_the_hook_is_not_called(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queued_job(redis, queue, fail)
    called: list[str] = []
    thread_worker(redis, queue, on_success=lambda pipeline, job: called.append(job.id)).perform(job, queue)
    assert called == []
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()


def test_the_shared_pools_socket_timeout_is_left_alone(redis_server: Any):
    """RQ's worker raises the socket timeout of the pool it is given to its dequeue wait; the job
    threads share a pool whose short timeout the dispatcher does not need raised."""
    for cls, expected in ((SimpleWorker, 25), (JobThreadWorker, 10)):
        client = connect(redis_server.url, timeout_s=10, max_connections=2)
        queue = Queue(QUEUE, connection=client, serializer=JobSerializer)
        options = {"execution_margin_s": 30} if cls is JobThreadWorker else {}
        cls([queue], connection=client, serializer=JobSerializer, prepare_for_work=False, worker_ttl=30, **options)
        assert client.connection_pool.connection_kwargs["socket_timeout"] == expected
        client.close()


# ---- 5. the scheduler ---------------------------------------------------------------------------


def test_the_scheduler_steps_on_the_shared_client_only(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queue.enqueue_in(timedelta(seconds=-1), remember_in_meta, "x", job_id="s1")
    scheduler = SharedScheduler(QUEUE, connection=redis, serializer=JobSerializer)
    assert scheduler.step() is True  # took the lock
    assert scheduler.connection is redis
    assert queue.get_job_ids() == [job.id] and ScheduledJobRegistry(queue=queue).get_job_ids() == []
    other = SharedScheduler(QUEUE, connection=redis, serializer=JobSerializer)
    assert other.step() is False and not other.acquired_locks  # one scheduler per queue
    scheduler.release()
    assert other.step() is True


# ---- 6. registry upkeep -------------------------------------------------------------------------


def test_clean_retries_a_job_stranded_in_the_intermediate_queue_and_drops_rqs_mark(redis: Redis):
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queue.enqueue(remember_in_meta, "x", job_id="i1", retry=Retry(max=2, interval=[10]))
    assert dequeue_job_id(redis, queue.key, None) == "i1"  # then the worker died
    worker = thread_worker(redis, queue)
    clean(queue, worker)  # first seen
    mark = queue.intermediate_queue.get_first_seen_key(job.id)
    assert redis.exists(mark)
    redis.set(mark, time.time() - 61)  # over a minute ago
    clean(queue, worker)
    assert redis.llen(queue.intermediate_queue_key) == 0 and not redis.exists(mark)
    assert job.id in ScheduledJobRegistry(queue=queue).get_job_ids()


def test_a_retry_whose_transaction_never_ran_is_reclaimed_not_dropped(redis: Redis):
    """RQ writes a retry's ``scheduled`` status at once, then schedules the job and ends its execution
    in one transaction; a worker killed in between leaves the job in no queue and no registry but the
    started one. RQ 3's cleanup alone would drop it; ``clean`` retries it."""
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    job = queue.enqueue(remember_in_meta, "x", job_id="r1", retry=Retry(max=3, interval=[10]))
    assert dequeue_job_id(redis, queue.key, None) == "r1"
    job = Job.fetch("r1", connection=redis, serializer=JobSerializer)
    execution = thread_worker(redis, queue).prepare_execution(job)
    job.set_status(JobStatus.SCHEDULED)  # RQ's write ahead of the retry's transaction; then SIGKILL
    redis.zadd(StartedJobRegistry(queue=queue).key, {execution.composite_key: time.time() - 1})
    stale = queue.enqueue(remember_in_meta, "y", job_id="r2")  # queued, with a stale started entry
    redis.zadd(StartedJobRegistry(queue=queue).key, {"r2:old-execution": time.time() - 1})
    clean(queue, thread_worker(redis, queue))
    assert job.id in ScheduledJobRegistry(queue=queue).get_job_ids()  # retried
    assert queue.get_job_ids() == [stale.id]  # queued once, not retried as well
    assert Job.fetch("r2", connection=redis, serializer=JobSerializer).get_status() == JobStatus.QUEUED


def test_rqs_cleanup_alone_drops_a_job_whose_status_was_written_ahead(redis: Redis):
    """Why ``clean`` reclaims: the same state, cleaned by RQ 3 alone, leaves the job nowhere."""
    queue = Queue(QUEUE, connection=redis, serializer=JobSerializer)
    queue.enqueue(remember_in_meta, "x", job_id="r1", retry=Retry(max=3, interval=[10]))
    assert dequeue_job_id(redis, queue.key, None) == "r1"
    job = Job.fetch("r1", connection=redis, serializer=JobSerializer)
    execution = thread_worker(redis, queue).prepare_execution(job)
    job.set_status(JobStatus.SCHEDULED)
    redis.zadd(StartedJobRegistry(queue=queue).key, {execution.composite_key: time.time() - 1})
    StartedJobRegistry(queue=queue).cleanup()
    assert job.id not in ScheduledJobRegistry(queue=queue).get_job_ids() and queue.get_job_ids() == []
    assert redis.zcard(StartedJobRegistry(queue=queue).key) == 0


# ---- RQ's key names, and RQ_KEY_PREFIX ----------------------------------------------------------


def test_the_key_names_are_rqs_own(redis: Redis):
    queue = Queue(QUEUE, connection=redis)
    assert keys.queue_key(QUEUE) == queue.key and Queue.redis_queues_keys == keys.QUEUES_SET
    assert Job.key_for("x") == keys.JOB_PREFIX + "x"
    assert keys.queue_key(QUEUE) + keys.INTERMEDIATE_SUFFIX == queue.intermediate_queue_key
    assert keys.scheduled_key(QUEUE) == ScheduledJobRegistry(queue=queue).key
    assert keys.started_key(QUEUE) == StartedJobRegistry(queue=queue).key
    assert keys.failed_key(QUEUE) == FailedJobRegistry(queue=queue).key
    assert RQ_KEY_PREFIX == "rq" and keys.DT == "dt:"


PREFIXED_RUN = """
import json
from redis import Redis
from connector.core.settings import Settings
from connector.web.app import create_app
from tests.support.helpers import dt_body, push
from workers.run.dyno import build_runner
settings = Settings.from_env()
client = create_app(settings, configure_logs=False).test_client()
assert push(client, dt_body(event_id="p1")).status_code == 200
assert build_runner(settings, burst=True).run() == 0
print(json.dumps(sorted(key.decode() for key in Redis.from_url(settings.redis_url).keys("*"))))
"""


@pytest.mark.slow
def test_rq_key_prefix_names_every_key_of_a_deployment(redis: Redis, redis_server: Any):
    """With ``RQ_KEY_PREFIX`` set (RQ reads it when imported: another process), a push received and
    delivered writes RQ's keys and ours under it: two deployments sharing one Redis share nothing."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url, "DT_SIGNATURE_SECRET": SECRET,
           "RQ_KEY_PREFIX": "tenant2", "ACCESS_LOG_FLUSH_MS": "0"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", PREFIXED_RUN], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stdout.splitlines()[-1])
    assert any(name.startswith("tenant2:dt:seen:") for name in names)
    assert any(name.startswith("tenant2:dt:metrics:jobs") for name in names)
    assert any(name.startswith("tenant2:job:log-") for name in names)
    assert [name for name in names if not name.startswith("tenant2:")] == []
