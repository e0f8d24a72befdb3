"""The worker process's runner (``workers.run.runner``), in this process, against a real Redis and
stand-ins on 127.0.0.1: jobs on threads, the job ledger, and recovery with no traffic."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry

from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core import deadletters
from connector.core.jobspec import JobSerializer
from connector.core.keys import JOB_LEDGER
from connector.core.settings import Settings
from connector.web.app import create_app
from connector.web.ops.metrics import JobAccount, collect
from tests.support.helpers import make_settings, push
from tests.support.samples import CUSTOMER, push_of
from tests.support.standins import Reply, StandIn
from workers.run import maintenance
from workers.run.dyno import build_runner
from workers.run.runner import Runner, ledger_field


def moost_settings(redis_url: str, standin: StandIn, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "destinations": ("moost",),
        "moost_base_url": standin.url,
        "moost_client_id": "client42",
        "moost_client_secret": "moost-client-secret-value-xyz",
        "moost_customer_id": CUSTOMER,
        "worker_threads": 4,
        "retry_schedule_s": (1, 1, 1),
    }
    options.update(overrides)
    return make_settings(redis_url, **options)


@pytest.fixture
def moost() -> Iterator[StandIn]:
    server = StandIn()
    server.script("/auth/token/v1", Reply(200, {"access_token": "tok-1", "expires_in": 86400}))
    server.script("/events/v1", Reply(201))
    yield server
    server.close()


def push_events(settings: Settings, *event_ids: str, kind: str = "temperature") -> None:
    client = create_app(settings, configure_logs=False).test_client()
    for event_id in event_ids:
        body = json.dumps(push_of(kind, event_id=event_id), separators=(",", ":")).encode()
        assert push(client, body).status_code == 200


@contextmanager
def running(settings: Settings, *, burst: bool = False) -> Iterator[Runner]:
    """A runner working in a background thread until the block ends."""
    runner = build_runner(settings, burst=burst)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the runner did not stop"
        runner.redis.close()
        runner.dequeue_redis.close()


def account(redis: Redis, destinations: tuple[str, ...] = ("moost",)) -> JobAccount:
    return collect(redis, queue_name="dt-forward", destinations=destinations, now=time.time()).jobs


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def posted(standin: StandIn) -> list[str]:
    return [seen.headers.get("Idempotency-Key", "") for seen in standin.requests if seen.path == "/events/v1"]


def test_jobs_run_side_by_side_on_threads(redis: Redis, redis_server: EmbeddedRedis, moost: StandIn):
    """Eight forwards to a downstream taking 0.4 s each finish together, not one after another."""
    moost.script("/events/v1", Reply(201, delay_s=0.4))
    settings = moost_settings(redis_server.url, moost, worker_threads=8)
    push_events(settings, *(f"par{n}" for n in range(8)))
    runner = build_runner(settings, burst=True)
    started = time.monotonic()
    assert runner.run() == 0
    elapsed = time.monotonic() - started
    assert sorted(posted(moost)) == sorted(f"par{n}" for n in range(8))
    assert elapsed < 8 * 0.4 / 2, f"8 jobs took {elapsed:.2f} s: not concurrent"


def test_burst_ends_as_soon_as_the_queue_is_empty(redis: Redis, redis_server: EmbeddedRedis, moost: StandIn):
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, "b1", "b2", "b3")
    started = time.monotonic()
    assert build_runner(settings, burst=True).run() == 0
    assert time.monotonic() - started < 5  # was ~61 s with RQ's worker pool
    assert account(redis) == JobAccount(created=3, delivered=3)


def test_every_job_is_counted_once_in_the_ledger(redis: Redis, redis_server: EmbeddedRedis, moost: StandIn):
    """Delivered, skipped, dead-lettered and retried-then-delivered: created equals settled."""
    moost.script("/events/v1", Reply(201), Reply(400, {"error": "unknown building"}), Reply(500), Reply(201))
    settings = moost_settings(redis_server.url, moost, worker_threads=1)
    push_events(settings, "ok1", "bad1", "retry1")  # in order, one thread: 201, 400, 500 then 201
    push_events(settings, "skip1", kind="co2")  # not mapped for MOOST
    with running(settings):
        wait_for(lambda: account(redis).pending == 0 and account(redis).settled == 4, 15, "four settled jobs")
    jobs = account(redis)
    assert (jobs.created, jobs.delivered, jobs.skipped, jobs.dead_lettered) == (4, 2, 1, 1)
    assert jobs.unaccounted == 0
    assert [letter.event_id for letter in deadletters.list_dead(redis)] == ["bad1"]


def test_a_mark_on_the_job_stops_a_rerun_from_delivering_twice(redis: Redis, redis_server, moost: StandIn):
    """A worker that dies after delivering but before RQ files the job leaves the job to be re-run;
    the re-run finds the delivery marked and does not send again."""
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, "once1")
    redis.hset("rq:job:moost-once1", "meta", JobSerializer.dumps({"delivered_at": time.time()}))
    assert build_runner(settings, burst=True).run() == 0
    assert posted(moost) == []
    assert account(redis) == JobAccount(created=1, delivered=1)


def test_an_orphaned_scheduler_lock_is_taken_over_without_traffic(redis: Redis, redis_server, moost: StandIn):
    """A SIGKILLed dyno leaves RQ's scheduler lock behind: when it expires, a running worker takes
    the scheduler over on its own and queues the retries that are due (no push needed)."""
    moost.script("/events/v1", Reply(500), Reply(201))
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, "orph1")
    redis.set("rq:scheduler-lock:dt-forward", "a-dead-worker", ex=4)  # RQ's own lease is 61 s
    with running(settings):
        wait_for(lambda: len(ScheduledJobRegistry("dt-forward", connection=redis)) == 1, 10, "the retry")
        waited = wait_for(lambda: posted(moost) == ["orph1", "orph1"], 20, "the retry to be delivered")
    assert waited > 1  # it waited for the orphaned lock to expire, then took over
    assert account(redis) == JobAccount(created=1, delivered=1)


def test_retries_still_fire_after_a_redis_restart_with_no_new_push(tmp_path: Path, moost: StandIn):
    """RQ's own scheduler process dies on a Redis restart; this one keeps ticking."""
    server = EmbeddedRedis(persist_dir=tmp_path / "redis").start()
    try:
        redis = Redis.from_url(server.url)
        moost.script("/events/v1", Reply(500), Reply(201))
        settings = moost_settings(server.url, moost, retry_schedule_s=(4,))
        push_events(settings, "rr1")
        with running(settings):
            wait_for(lambda: len(ScheduledJobRegistry("dt-forward", connection=redis)) == 1, 10, "the retry")
            server.stop()
            time.sleep(1.0)
            server.start()
            wait_for(lambda: posted(moost) == ["rr1", "rr1"], 20, "the retry after the restart")
            wait_for(lambda: account(redis).settled == 1, 10, "the job to be filed")
        assert account(redis) == JobAccount(created=1, delivered=1)
    finally:
        server.stop()


def test_a_job_stranded_by_a_dead_worker_is_visible_then_retried(redis: Redis, redis_server, moost: StandIn):
    """A worker killed between dequeue and start leaves the job in RQ's intermediate queue:
    /metrics and /status count it as stranded (not lost), and maintenance retries it."""
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, "str1")
    redis.lmove("rq:queue:dt-forward", "rq:queue:dt-forward:intermediate")  # what the dead worker did
    jobs = account(redis)
    assert (jobs.queued, jobs.intermediate, jobs.unaccounted) == (0, 1, 0)
    client = create_app(settings, configure_logs=False).test_client()
    assert re.search(r'^dt_connector_jobs_stranded\{queue="dt-forward"\} 1(\.0)?$', client.get("/metrics").text, re.M)
    assert "<td id=stranded class=bad>1</td>" in client.get("/status").text

    queue = Queue("dt-forward", connection=redis, serializer=JobSerializer)
    another_worker = build_runner(settings).worker
    assert maintenance.run(redis, queue, another_worker, now=time.time())  # first seen now
    redis.set("rq:queue:dt-forward:intermediate:first_seen:moost-str1", time.time() - 61)  # a minute later
    assert maintenance.run(redis, queue, another_worker, now=time.time())
    assert account(redis).intermediate == 0
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == ["moost-str1"]  # a crash retry, 10 s out
    redis.zadd("rq:scheduled:dt-forward", {"moost-str1": 0})  # ... which is due
    assert build_runner(settings, burst=True).run() == 0
    assert posted(moost) == ["str1"]
    assert account(redis) == JobAccount(created=1, delivered=1)


def explode() -> None:
    raise RuntimeError("a bug in a job, with a secret in its message: moost-client-secret-value-xyz")


def test_jobs_rq_filed_as_failed_become_dead_letters(redis: Redis, redis_server, moost: StandIn, worker_env, capsys):
    """RQ's failed registry is seen by nothing a user looks at; maintenance moves its jobs to the
    dead letters (without the exception's message), where `failed list` and Replay see them."""
    from connector.cli.main import main

    settings = moost_settings(redis_server.url, moost)
    queue = Queue("dt-forward", connection=redis, serializer=JobSerializer)
    queue.enqueue(explode, job_id="moost-boom1")
    redis.hincrby(JOB_LEDGER, "created", 1)  # as a replay counts what it creates
    SimpleWorker([queue], connection=redis, serializer=JobSerializer).work(burst=True)  # RQ's own worker
    assert account(redis).failed == 1
    assert maintenance.run(redis, queue, build_runner(settings).worker, now=time.time())
    assert redis.zcard("rq:failed:dt-forward") == 0
    [letter] = deadletters.list_dead(redis)
    assert (letter.key, letter.reason) == ("moost-boom1", "worker-error:RuntimeError")
    assert "secret" not in letter.excerpt and "explode" in letter.excerpt
    assert account(redis) == JobAccount(created=1, dead_lettered=1)
    assert main(["failed", "list"]) == 0
    out = capsys.readouterr().out
    assert "moost-boom1" in out and "unaccounted: 0" in out


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ("delivered", "delivered"),
        ("skipped:not-mapped", "skipped"),
        ("dead-letter:http-400", "dead_lettered"),
        (None, "finished"),
        ("ok", "finished"),
    ],
)
def test_ledger_field_of_what_the_job_returned(result: object, field: str):
    assert ledger_field(result) == field


def test_event_ids_that_used_to_share_a_job_id_are_each_delivered_once(redis: Redis, redis_server, moost: StandIn):
    """On main, an unsafe eventId and a safe one spelling its hashed form shared a job id: one
    event was lost and the other delivered twice."""
    import hashlib

    from connector.core.jobspec import job_id

    unsafe = "a:b/c d"
    spelled = [
        "h" + hashlib.sha256(unsafe.encode()).hexdigest()[:40],  # the old hashed form
        job_id("moost", unsafe).removeprefix("moost-"),  # today's
    ]
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, unsafe, *spelled)
    assert len(set(redis.lrange("rq:queue:dt-forward", 0, -1))) == 3
    assert build_runner(settings, burst=True).run() == 0
    keys = posted(moost)
    assert sorted(keys) == sorted(["a:b/c%20d", *spelled])  # each once (the unsafe one percent-encoded)
    assert account(redis) == JobAccount(created=3, delivered=3)


def test_a_job_filed_twice_is_counted_once(redis: Redis, redis_server, moost: StandIn):
    """A job can reach RQ's success handling twice: re-run after its worker looked dead, or a
    transaction repeated after its reply was lost to a Redis restart. The ledger counts it once
    (and the downstream got it once: the re-run finds the delivery marked)."""
    settings = moost_settings(redis_server.url, moost)
    push_events(settings, "twice1")
    assert build_runner(settings, burst=True).run() == 0
    redis.rpush("rq:queue:dt-forward", "moost-twice1")  # the same job, queued again
    assert build_runner(settings, burst=True).run() == 0
    assert redis.hget("rq:job:moost-twice1", "status") == b"finished"
    assert posted(moost) == ["twice1"]
    assert account(redis) == JobAccount(created=1, delivered=1)
