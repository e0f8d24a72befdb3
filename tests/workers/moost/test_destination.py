"""MOOST as a destination, through forward(), against a stand-in server on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import time

from redis import Redis
from rq import Retry

from connector.core import deadletters
from connector.core.times import format_rfc3339
from tests.support.samples import CLIENT_SECRET, CUSTOMER, DATA, push_of
from tests.support.standins import Reply, StandIn, events_posted
from workers.jobs import forward, reset_runtime


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

    def test_a_replay_of_a_recent_event_goes_live_and_of_an_old_one_to_history(self, moost_env: StandIn):
        """MOOST's rule engine runs on /events/v1 only: a delivery replayed an hour after it failed must
        still reach it; an event older than MOOST_LIVE_MAX_AGE_S (12 h) is stored as history."""
        moost_env.script("/events/v1", Reply(201))
        moost_env.script("/events/historical/v1", Reply(200))
        recent = push_of("temperature", event_id="r1", data=copy.deepcopy(DATA["temperature"]))  # DATA is shared
        old = push_of("temperature", event_id="r2")
        an_hour_ago = format_rfc3339(time.time() - 3600, digits=6)
        recent["event"]["timestamp"] = an_hour_ago
        recent["event"]["data"]["temperature"]["updateTime"] = an_hour_ago
        recent["event"]["data"]["temperature"]["samples"][0]["sampleTime"] = an_hour_ago
        old["event"]["timestamp"] = format_rfc3339(time.time() - 13 * 3600, digits=6)
        assert forward("moost", recent, 1.0, replay=True) == "delivered"
        assert forward("moost", old, 1.0, replay=True) == "delivered"
        assert [s.headers["Idempotency-Key"] for s in moost_env.requests if s.path == "/events/v1"] == ["r1"]
        [batch] = events_posted(moost_env, "/events/historical/v1")
        assert len(batch) == 1
        assert [s.headers["Idempotency-Key"] for s in moost_env.requests if s.path.startswith("/events/h")] == ["r2"]

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
