"""The MOOST translator: every DT event type, MOOST's field rules."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from connector.core.events import DT_EVENT_TYPES
from tests.support.samples import CUSTOMER, DATA, push_of
from workers.moost.events import to_moost
from workers.translate.mapping import load_mapping
from workers.translate.pushes import InvalidEvent, Skipped

MAPPING = load_mapping()

TS = 1716978843  # 2024-05-29T10:34:03Z


class TestMoost:
    def test_temperature(self):
        batch = to_moost(push_of("temperature"), MAPPING, customer_id=CUSTOMER)
        assert batch.historical is False
        assert batch.events == [
            {
                "timestamp": TS,
                "customerId": CUSTOMER,
                "customerBuildingId": "site-42",
                "deviceId": "bchonod7rihjtvdmd2vg",
                "deviceName": "Fridge 3",
                "value": 21.45,
                "type": "TEMPERATURE",
                "source": "THERMAL_ZONE",
            }
        ]

    def test_contact_states_become_switch_state(self):
        open_ = to_moost(push_of("contact"), MAPPING, customer_id=CUSTOMER).events[0]
        closed_data = {"contact": {"state": "CLOSED", "updateTime": "2024-05-29T10:34:03Z"}}
        closed = to_moost(push_of("contact", data=closed_data), MAPPING, customer_id=CUSTOMER).events[0]
        assert (open_["type"], open_["value"], closed["value"]) == ("SWITCH_STATE", 1, 0)

    def test_humidity_sends_its_temperature(self):
        event = to_moost(push_of("humidity"), MAPPING, customer_id=CUSTOMER).events[0]
        assert (event["type"], event["value"]) == ("TEMPERATURE", 22.1)

    def test_backfilled_goes_historical_one_event_per_sample(self):
        data = copy.deepcopy(DATA["temperature"])
        data["temperature"]["isBackfilled"] = True
        data["temperature"]["samples"] = [
            {"value": 20.0, "sampleTime": "2024-05-29T10:30:00Z"},
            {"value": 19.5, "sampleTime": "2024-05-29T10:15:00.5Z"},
        ]
        batch = to_moost(push_of("temperature", data=data), MAPPING, customer_id=CUSTOMER)
        assert batch.historical is True
        assert [(e["timestamp"], e["value"]) for e in batch.events] == [(1716978600, 20.0), (1716977700, 19.5)]

    @pytest.mark.parametrize("event_type", DT_EVENT_TYPES)
    def test_every_type_has_an_explicit_fate(self, event_type):
        try:
            batch = to_moost(push_of(event_type), MAPPING, customer_id=CUSTOMER)
        except Skipped as skipped:
            assert skipped.reason == "not-mapped" and skipped.detail
        else:
            assert batch.events and all(type(e["value"]) in (int, float) for e in batch.events)

    def test_device_name_falls_back_to_the_device_id_and_is_shortened(self):
        unnamed = to_moost(push_of("temperature", labels={"moost_building": "b1"}), MAPPING, customer_id=CUSTOMER)
        assert unnamed.events[0]["deviceName"] == "bchonod7rihjtvdmd2vg"
        long_name = push_of("temperature", labels={"moost_building": "b1", "name": "x" * 300})
        assert len(to_moost(long_name, MAPPING, customer_id=CUSTOMER).events[0]["deviceName"]) == 100

    def test_no_building_is_skipped_unless_a_default_exists(self):
        unlabelled = push_of("temperature", labels={"name": "n"})
        with pytest.raises(Skipped) as info:
            to_moost(unlabelled, MAPPING, customer_id=CUSTOMER)
        assert info.value.reason == "no-building"
        with_default = replace(MAPPING, default_building="main-site")
        assert to_moost(unlabelled, with_default, customer_id=CUSTOMER).events[0]["customerBuildingId"] == "main-site"

    @pytest.mark.parametrize(
        ("push", "customer", "message"),
        [
            (push_of("temperature"), "short", "customerId"),
            (push_of("temperature", labels={"moost_building": "site/42"}), CUSTOMER, "customerBuildingId"),
            (push_of("temperature", device_id="ab"), CUSTOMER, "deviceId"),
            (push_of("temperature", device_id="a" * 65), CUSTOMER, "deviceId"),
            (
                push_of("contact", data={"contact": {"state": "AJAR", "updateTime": "2024-05-29T10:34:03Z"}}),
                CUSTOMER,
                "map",
            ),
            (
                push_of("temperature", data={"temperature": {"value": 1, "updateTime": "yesterday"}}),
                CUSTOMER,
                "RFC 3339",
            ),
        ],
    )
    def test_pattern_violations_are_permanent_failures(self, push, customer, message):
        with pytest.raises(InvalidEvent, match=message):
            to_moost(push, MAPPING, customer_id=customer)
