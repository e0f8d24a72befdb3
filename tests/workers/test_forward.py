"""forward() against stand-in MOOST and Spot servers on 127.0.0.1, with a real Redis and RQ."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from connector import create_app, deadletters
from connector.settings import Settings
from tests.conftest import push, queued_ids
from tests.standins import Reply, StandIn
from tests.workers.samples import DATA, push_of
from workers.jobs import forward, reset_runtime
from workers.translate.mapping import DEFAULT_MAPPING_PATH

CUSTOMER = "656730be2bc9719e6e5ed51d"
CLIENT_SECRET = "moost-client-secret-value-xyz"
SPOT_KEY = "spot-api-key-value-abc123"


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def moost_env(worker_env, standin: StandIn, monkeypatch, tmp_path):
    monkeypatch.setenv("MOOST_BASE_URL", standin.url)
    monkeypatch.setenv("MOOST_CLIENT_ID", "client42")
    monkeypatch.setenv("MOOST_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("MOOST_CUSTOMER_ID", CUSTOMER)
    standin.script("/auth/token/v1", Reply(200, {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 86400}))
    reset_runtime()
    return standin


@pytest.fixture
def spot_env(worker_env, standin: StandIn, monkeypatch, tmp_path):
    mapping = tmp_path / "mapping.toml"
    text = DEFAULT_MAPPING_PATH.read_text().replace("event_type_id = 0", "event_type_id = 31")
    mapping.write_text(text)
    monkeypatch.setenv("CONNECTOR_MAPPING", str(mapping))
    monkeypatch.setenv("SPOT_BASE_URL", standin.url)
    monkeypatch.setenv("SPOT_API_KEY", SPOT_KEY)
    monkeypatch.setenv("SPOT_INTEGRATION_ID", "7")
    reset_runtime()
    return standin


def events_posted(standin: StandIn, path: str) -> list:
    return [seen.json() for seen in standin.requests if seen.path == path]


class TestMoost:
    def test_token_then_event(self, moost_env: StandIn, redis: Redis):
        moost_env.script("/events/v1", Reply(201))
        assert forward("moost", push_of("temperature", event_id="m1"), 1.0) == "delivered"
        token_calls = [s for s in moost_env.requests if s.path.startswith("/auth/token/v1")]
        assert len(token_calls) == 1 and f"clientSecret={CLIENT_SECRET}" in token_calls[0].path
        [event] = events_posted(moost_env, "/events/v1")
        assert event["type"] == "TEMPERATURE" and event["value"] == 21.45 and event["customerId"] == CUSTOMER
        sent = next(s for s in moost_env.requests if s.path == "/events/v1")
        assert sent.headers["Authorization"] == "Bearer tok-1" and sent.headers["Idempotency-Key"] == "m1"
        assert redis.get("dt:moost:token") == b"tok-1"
        assert 86000 < redis.ttl("dt:moost:token") <= 86400 - 300

    def test_token_is_shared_through_redis(self, moost_env: StandIn, redis: Redis):
        moost_env.script("/events/v1", Reply(201))
        redis.set("dt:moost:token", "tok-from-another-worker", ex=600)
        assert forward("moost", push_of("temperature", event_id="m2"), 1.0) == "delivered"
        assert not [s for s in moost_env.requests if s.path.startswith("/auth/token/v1")]
        assert next(s for s in moost_env.requests if s.path == "/events/v1").headers["Authorization"] == (
            "Bearer tok-from-another-worker"
        )

    def test_401_renews_the_token_once(self, moost_env: StandIn, redis: Redis):
        redis.set("dt:moost:token", "expired-token", ex=600)
        moost_env.script("/events/v1", Reply(401), Reply(201))
        assert forward("moost", push_of("temperature", event_id="m3"), 1.0) == "delivered"
        auths = [s.headers["Authorization"] for s in moost_env.requests if s.path == "/events/v1"]
        assert auths == ["Bearer expired-token", "Bearer tok-1"]

    def test_backfilled_goes_to_the_historical_endpoint_as_an_array(self, moost_env: StandIn):
        moost_env.script("/events/historical/v1", Reply(200))
        data = json.loads(json.dumps(DATA["temperature"]))
        data["temperature"]["isBackfilled"] = True
        data["temperature"]["samples"] = [
            {"value": 20.0, "sampleTime": "2024-05-29T10:30:00Z"},
            {"value": 19.5, "sampleTime": "2024-05-29T10:15:00Z"},
        ]
        assert forward("moost", push_of("temperature", data=data, event_id="m4"), 1.0) == "delivered"
        [batch] = events_posted(moost_env, "/events/historical/v1")
        assert [e["value"] for e in batch] == [20.0, 19.5]

    def test_400_is_a_dead_letter_with_the_reason_and_no_secret(self, moost_env: StandIn, redis: Redis):
        moost_env.script("/events/v1", Reply(400, {"customerBuildingId": "unknown building"}))
        result = forward("moost", push_of("temperature", event_id="m5"), 1.0)
        assert result == "dead-letter:http-400"
        [letter] = deadletters.list_dead(redis)
        assert (letter.destination, letter.event_id, letter.status) == ("moost", "m5", 400)
        assert "unknown building" in letter.excerpt
        assert letter.push["event"]["eventId"] == "m5"
        dumped = repr(redis.hgetall(f"dt:dead:{letter.key}"))
        assert CLIENT_SECRET not in dumped and "tok-1" not in dumped

    def test_429_returns_a_retry_honouring_retry_after(self, moost_env: StandIn):
        moost_env.script("/events/v1", Reply(429, headers={"Retry-After": "120"}))
        result = forward("moost", push_of("temperature", event_id="m6"), 1.0)
        assert isinstance(result, Retry)
        assert result.intervals == [120]

    def test_stalled_response_is_a_retry(self, moost_env: StandIn, monkeypatch):
        monkeypatch.setenv("FORWARD_TIMEOUT_S", "0.3")
        reset_runtime()
        moost_env.script("/events/v1", Reply(201, delay_s=1.5))
        result = forward("moost", push_of("temperature", event_id="m7"), 1.0)
        assert isinstance(result, Retry)

    def test_skipped_types_are_counted_by_reason(self, moost_env: StandIn, redis: Redis):
        assert forward("moost", push_of("co2", event_id="m8"), 1.0) == "skipped:not-mapped"
        assert forward("moost", push_of("temperature", labels={}, event_id="m9"), 1.0) == "skipped:no-building"
        assert redis.hgetall("dt:skipped:moost") == {b"not-mapped": b"1", b"no-building": b"1"}
        assert not [s for s in moost_env.requests if s.path == "/events/v1"]

    def test_invalid_event_is_a_dead_letter_without_a_request(self, moost_env: StandIn, redis: Redis):
        result = forward("moost", push_of("temperature", device_id="x", event_id="m10"), 1.0)
        assert result == "dead-letter:invalid-event"
        assert "deviceId" in deadletters.list_dead(redis)[0].excerpt


class TestSpot:
    def test_ingest_with_bearer_key(self, spot_env: StandIn):
        spot_env.script("/v1/integrations/7/events", Reply(202))
        assert forward("spot", push_of("contact", event_id="s1"), 1.0) == "delivered"
        [seen] = [s for s in spot_env.requests if s.path == "/v1/integrations/7/events"]
        assert seen.headers["Authorization"] == f"Bearer {SPOT_KEY}"
        body = seen.json()
        assert body["integration_event_type_id"] == 31 and body["attributes"]["state"] == "OPEN"

    def test_backfill_of_a_known_spot_device_goes_to_bulk_import(self, spot_env: StandIn):
        spot_env.script("/v1/integrations/7/events/import", Reply(202))
        data = copy.deepcopy(push_of("temperature")["event"]["data"])
        data["temperature"]["isBackfilled"] = True
        data["temperature"]["samples"] = [
            {"value": 20.0, "sampleTime": "2024-05-29T10:30:00Z"},
            {"value": 19.5, "sampleTime": "2024-05-29T10:15:00Z"},
        ]
        push = push_of("temperature", data=data, labels={"spot_device_id": "4711"}, event_id="s3")
        assert forward("spot", push, 1.0) == "delivered"
        [doc] = events_posted(spot_env, "/v1/integrations/7/events/import")
        items = doc["integration_events"]
        assert [item["attributes"]["temperature_c"] for item in items] == [20.0, 19.5]
        assert {item["integration_device_id"] for item in items} == {4711}
        assert not events_posted(spot_env, "/v1/integrations/7/events")

    def test_replay_without_a_spot_device_id_is_ingested_one_by_one(self, spot_env: StandIn):
        spot_env.script("/v1/integrations/7/events", Reply(202))
        assert forward("spot", push_of("contact", event_id="s4"), 1.0, replay=True) == "delivered"
        assert len(events_posted(spot_env, "/v1/integrations/7/events")) == 1
        assert not events_posted(spot_env, "/v1/integrations/7/events/import")

    def test_rejected_key_is_a_dead_letter(self, spot_env: StandIn, redis: Redis, caplog):
        spot_env.script("/v1/integrations/7/events", Reply(401, {"message": "bad key"}))
        with caplog.at_level(logging.INFO, logger="workers"):
            assert forward("spot", push_of("contact", event_id="s2"), 1.0) == "dead-letter:spot-api-key-rejected"
        assert SPOT_KEY not in caplog.text


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


def test_dead_letter_list_show_replay_round_trip(moost_env: StandIn, redis: Redis, capsys):
    """400 → dead letter → fix at the downstream → `failed replay` → delivered (historical)."""
    from connector.cli.main import main

    moost_env.script("/events/v1", Reply(400, {"error": "unknown building"}))
    assert forward("moost", push_of("temperature", event_id="dl1"), 1.0).startswith("dead-letter")
    assert forward("moost", push_of("contact", event_id="dl2"), 1.0).startswith("dead-letter")

    assert main(["failed", "list", "--destination", "moost", "--event-type", "contact"]) == 0
    listed = capsys.readouterr().out
    assert "moost-dl2" in listed and "moost-dl1" not in listed
    assert "1 dead letter(s)" in listed
    assert main(["failed", "show", "dl-missing"]) == 1
    capsys.readouterr()

    key = deadletters.list_dead(redis, event_type="temperature")[0].key
    assert main(["failed", "show", key]) == 0
    assert "unknown building" in capsys.readouterr().out

    moost_env.script("/events/historical/v1", Reply(200))  # the building now exists
    assert main(["failed", "replay", "--since", "1h", key]) == 0
    assert "1 dead letter(s) queued again" in capsys.readouterr().out
    assert deadletters.get(redis, key) is None
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    [batch] = events_posted(moost_env, "/events/historical/v1")
    assert batch[0]["type"] == "TEMPERATURE"
    assert len(deadletters.list_dead(redis)) == 1  # the contact one was not replayed


def test_parse_time():
    from connector.times import parse_since as parse_time

    assert parse_time("24h", now=100_000.0) == 100_000.0 - 86_400
    assert parse_time("30m", now=10_000.0) == 10_000.0 - 1_800
    assert parse_time("2026-11-23T00:00:00Z", now=0) == 1_795_392_000.0
    with pytest.raises(ValueError):
        parse_time("yesterday", now=0)


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

        from connector.ops.metrics import collect

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
    from connector.errors import ConfigError

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


def test_dead_letters_list_across_read_batches_in_order_with_filters(redis: Redis):
    for n in range(450):  # more than two pipelined read batches
        destination = "moost" if n % 3 else "spot"
        deadletters.record(redis, key=f"{destination}-many{n:03d}", destination=destination,
                           push=push_of("temperature", event_id=f"many{n:03d}"), received_at=1.0,
                           reason="http-400", status=400, excerpt="", now=1000.0 + n)  # fmt: skip
    redis.delete("dt:dead:moost-many010")  # expired meanwhile: skipped, not an error
    spot = deadletters.list_dead(redis, destination="spot")
    assert [x.event_id for x in spot] == [f"many{n:03d}" for n in range(0, 450, 3)]
    moost = deadletters.list_dead(redis, destination="moost", limit=250)
    assert len(moost) == 250 and moost[0].event_id == "many001" and "many010" not in {x.event_id for x in moost}
    assert [x.failed_at for x in moost] == sorted(x.failed_at for x in moost)


def test_the_command_line_and_backfill_read_times_alike():
    """Once two parse_times disagreed: backfill refused a time without a zone, `failed` took it as UTC."""
    from datetime import UTC, datetime

    from connector.dt.backfill import window
    from connector.times import parse_since

    with pytest.raises(ValueError, match="zone"):
        parse_since("2026-11-23T00:00:00", now=0)
    with pytest.raises(ValueError, match="zone"):
        window(since=None, start="2026-11-23T00:00:00", end=None, now=datetime(2026, 11, 24, tzinfo=UTC))
