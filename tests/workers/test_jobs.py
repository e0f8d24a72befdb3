"""``workers.jobs``: ``decide`` (pure: an outcome to what the job does), then ``forward`` end to end
against stand-in MOOST and Spot servers on 127.0.0.1, with a real Redis and RQ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from connector.core import deadletters
from connector.core.settings import Settings
from connector.web.app import create_app
from tests.support.helpers import dt_body, push, queued_ids
from tests.support.samples import push_of
from tests.support.standins import Reply, StandIn, events_posted
from workers.deliver.send import Outcome
from workers.jobs import Forwarder, decide, forward, reset_runtime
from workers.translate.pushes import Skipped

SCHEDULE = (10, 60, 300)


def test_a_delivery_is_done():
    decision = decide(Outcome("delivered", "ok", 202), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert (decision.verdict, decision.result, decision.status) == ("delivered", "delivered", 202)


def test_a_skip_keeps_its_reason_and_sentence():
    decision = decide(Skipped("not-mapped", "spot does not take touch"), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "skipped:not-mapped"
    assert decision.detail == "spot does not take touch"


def test_a_transient_failure_waits_its_turn_in_the_schedule_with_jitter():
    middle = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.5)
    assert (middle.verdict, middle.attempt, middle.delay_s) == ("retry", 2, 60)
    low = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.0)
    high = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.999)
    assert low.delay_s is not None and high.delay_s is not None
    assert low.delay_s < 60 < high.delay_s


def test_retry_after_lengthens_the_wait_but_never_shortens_it():
    longer = decide(Outcome("retry", "http-429", 429, retry_after_s=45), attempt=1, schedule=SCHEDULE, rand=0.5)
    shorter = decide(Outcome("retry", "http-429", 429, retry_after_s=1), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert longer.delay_s == 45
    assert shorter.delay_s == 10


def test_the_schedule_used_up_is_a_dead_letter_naming_the_last_failure():
    decision = decide(Outcome("retry", "http-503", 503, excerpt="busy"), attempt=4, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "dead-letter:retries-exhausted:http-503"
    assert (decision.status, decision.excerpt) == (503, "busy")


def test_a_permanent_failure_is_a_dead_letter_at_once():
    decision = decide(Outcome("failed", "http-400", 400, excerpt="bad"), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "dead-letter:http-400"
    assert decision.delay_s is None


def test_retry_is_scheduled_through_rq(moost_env: StandIn, redis: Redis, redis_server):
    """A push on /dt/events → RQ job → 500 at MOOST → the job is scheduled for a retry."""
    moost_env.script("/events/v1", Reply(500, {"error": "down"}))
    settings = Settings.from_env()
    client = create_app(settings, configure_logs=False).test_client()
    body = json.dumps(push_of("temperature", event_id="rq1"), separators=(",", ":")).encode()
    assert push(client, body).status_code == 200
    assert queued_ids(redis) == ["moost-rq1"]
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == ["moost-rq1"]
    assert deadletters.list_dead(redis) == []


def test_end_to_end_both_destinations_fail_and_retry_independently(moost_env: StandIn, spot_env: StandIn, redis: Redis):
    """Signed push → /dt/events → one job per destination → stand-ins; a failing MOOST
    does not block or duplicate the Spot delivery."""
    assert moost_env is spot_env  # one stand-in serves both APIs on different paths
    moost_env.script("/events/v1", Reply(503, {"error": "maintenance"}), Reply(201))
    moost_env.script("/v1/integrations/7/events", Reply(202))
    settings = Settings.from_env()
    assert settings.destinations == ("moost", "spot")
    client = create_app(settings, configure_logs=False).test_client()
    body = json.dumps(push_of("temperature", event_id="e2e1"), separators=(",", ":")).encode()
    assert push(client, body).status_code == 200
    assert sorted(queued_ids(redis)) == ["moost-e2e1", "spot-e2e1"]
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    assert len(events_posted(moost_env, "/v1/integrations/7/events")) == 1  # Spot delivered once
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == ["moost-e2e1"]  # MOOST waits for its retry
    # The retry comes due: run it now instead of waiting for the scheduler.
    registry = ScheduledJobRegistry(queue=queue)
    job = queue.fetch_job("moost-e2e1")
    registry.remove(job)
    queue.enqueue_job(job)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    assert len(events_posted(moost_env, "/events/v1")) == 2  # 503, then 201
    assert len(events_posted(moost_env, "/v1/integrations/7/events")) == 1  # no duplicate at Spot
    assert deadletters.list_dead(redis) == []


class TestDeliveryMetrics:
    def test_delivered_retried_and_dead_lettered_are_counted(self, moost_env: StandIn, redis: Redis):
        import time

        from connector.web.ops.metrics import collect

        moost_env.script("/events/v1", Reply(201), Reply(500), Reply(400, {"error": "bad"}))
        assert forward("moost", push_of("temperature", event_id="k1"), time.time() - 2.0) == "delivered"
        assert isinstance(forward("moost", push_of("temperature", event_id="k2"), time.time()), Retry)
        assert forward("moost", push_of("temperature", event_id="k3"), time.time()).startswith("dead-letter")
        assert forward("moost", push_of("touch", event_id="k4"), time.time()).startswith("skipped")
        snap = collect(redis, queue_name="dt-forward", destinations=["moost"], now=time.time())
        assert snap.deliveries["moost"] == {"delivered": 1, "retried": 1, "dead_lettered": 1}
        assert sum(snap.skipped["moost"].values()) == 1
        assert snap.latency["moost"]["2.5"] == 1 and 2.0 <= snap.latency["moost"]["sum"] < 2.5
        health = snap.health["moost"]
        assert 0 < health["last_ok"] <= health["last_error"] <= time.time()
        assert redis.hget("dt:metrics:health:moost", "last_error_reason") == b"http-400"
        assert snap.dead_letters == 1
        last = json.loads(redis.hget("dt:devices", "bchonod7rihjtvdmd2vg"))
        assert (last["eventId"], last["name"]) == ("k1", "Fridge 3")
        assert redis.get(f"dt:metrics:minute:moost:{int(health['last_ok'] // 60)}") == b"1"


def test_retry_schedule_is_configurable(moost_env: StandIn, monkeypatch):
    from connector.core.errors import ConfigError

    monkeypatch.setenv("RETRY_SCHEDULE_S", "5,60")
    assert Settings.from_env().retry_schedule_s == (5, 60)
    reset_runtime()
    moost_env.script("/events/v1", Reply(503))
    retry = forward("moost", push_of("temperature", event_id="sched1"), 1.0)
    assert isinstance(retry, Retry) and retry.max == 3 and 4 <= retry.intervals[0] <= 6  # 5 s ± 20 %
    for bad in ("0", "a,b", "10,,20", ",".join(["1"] * 51)):
        monkeypatch.setenv("RETRY_SCHEDULE_S", bad)
        with pytest.raises(ConfigError, match="RETRY_SCHEDULE_S"):
            Settings.from_env()


class _BrokenDestination:
    """A destination whose code fails on the event: a bug, or an input nobody foresaw."""

    name = "moost"

    def deliver(self, push, *, event_id, now, replay=False, deadline=None):
        raise ValueError("invalid header value b'Bearer token-that-must-not-leak\\r\\n'")


def test_an_error_while_handling_an_event_is_a_dead_letter_not_a_crash(redis: Redis):
    forwarder = Forwarder(redis=redis, destinations={"moost": _BrokenDestination()}, retry_schedule_s=(1,),
                          job_timeout_s=20)  # fmt: skip
    result = forwarder.forward("moost", json.loads(dt_body(event_id="bug1")), 1.0)
    assert result == "dead-letter:worker-error:ValueError"
    [letter] = deadletters.list_dead(redis)
    assert letter.reason == "worker-error:ValueError"
    assert "deliver" in letter.excerpt and Path(__file__).name in letter.excerpt
    assert "token-that-must-not-leak" not in repr(redis.hgetall(f"dt:dead:{letter.key}"))
