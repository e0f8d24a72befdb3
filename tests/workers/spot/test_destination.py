"""Spot AI as a destination, through forward(), against a stand-in server on 127.0.0.1."""

from __future__ import annotations

import copy
import logging

from redis import Redis

from tests.support.samples import SPOT_KEY, push_of
from tests.support.standins import Reply, StandIn, events_posted
from workers.jobs import forward


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
