"""Translators and mapping: every DT event type, MOOST and Spot field rules, mapping errors."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from connector.events import DT_EVENT_TYPES
from tests.support.samples import CUSTOMER, DATA, PROJECT, push_of
from workers.translate import mapping as mapping_module
from workers.translate import payloads as translate_module
from workers.translate import readings as readings_module
from workers.translate.mapping import SpotRule, load_mapping
from workers.translate.payloads import InvalidEvent, Skipped, epoch_seconds, rfc3339_millis, to_moost, to_spot

MAPPING = load_mapping()

TS = 1716978843  # 2024-05-29T10:34:03Z


def with_spot_ids(mapping=MAPPING):
    """The default mapping with a Spot event type id set for every forwarded type."""
    spot = {t: (r if r.skip else replace(r, event_type_id=100 + n)) for n, (t, r) in enumerate(mapping.spot.items())}
    return replace(mapping, spot=spot)


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


class TestSpot:
    mapping = with_spot_ids()

    def test_temperature(self):
        [body] = to_spot(push_of("temperature"), self.mapping)
        assert body["integration_event_type_id"] == self.mapping.spot["temperature"].event_type_id
        assert body["timestamp"] == "2024-05-29T10:34:03.970Z"
        assert body["device_external_id"] == "bchonod7rihjtvdmd2vg"
        assert body["attributes"] == {
            "temperature_c": 21.45,
            "device_id": "bchonod7rihjtvdmd2vg",
            "project_id": PROJECT,
            "dt_event_type": "temperature",
            "label_name": "Fridge 3",
            "label_moost_building": "site-42",
        }
        assert "duration" not in body

    def test_contact_carries_state_and_duration(self):
        [body] = to_spot(push_of("contact"), self.mapping)
        assert body["attributes"]["state"] == "OPEN"
        assert body["duration"] == 10000

    @pytest.mark.parametrize("event_type", DT_EVENT_TYPES)
    def test_every_type_has_an_explicit_fate(self, event_type):
        try:
            bodies = to_spot(push_of(event_type), self.mapping)
        except Skipped as skipped:
            assert skipped.reason == "not-mapped"
        else:
            assert bodies and all(b["timestamp"].endswith("Z") for b in bodies)

    def test_unset_event_type_id_is_skipped_with_the_key_to_set(self):
        with pytest.raises(Skipped) as info:
            to_spot(push_of("co2"), MAPPING)
        assert info.value.reason == "spot-type-not-set"
        assert "events.co2.spot.event_type_id" in info.value.detail

    def test_prefix_and_overlong_external_id(self):
        prefixed = replace(self.mapping, spot_device_prefix="dt-")
        assert to_spot(push_of("co2"), prefixed)[0]["device_external_id"] == "dt-bchonod7rihjtvdmd2vg"
        with pytest.raises(InvalidEvent):
            to_spot(push_of("co2", device_id="d" * 256), self.mapping)

    def test_labelled_spot_device_is_addressed_by_id(self):
        labels = {"name": "Door 1", "spot_device_id": "4711"}
        [body] = to_spot(push_of("contact", labels=labels), self.mapping)
        assert body["integration_device_id"] == 4711
        assert "device_external_id" not in body
        assert body["attributes"]["label_spot_device_id"] == "4711"

    @pytest.mark.parametrize("value", ["abc", "-3", "0", "2147483648", "4.5", "²", "٣"])
    def test_spot_device_label_that_is_not_an_id_is_invalid(self, value):
        with pytest.raises(InvalidEvent, match="spot_device_id"):
            to_spot(push_of("contact", labels={"spot_device_id": value}), self.mapping)

    def test_spot_device_label_can_be_switched_off(self):
        mapping = replace(self.mapping, spot_device_label="")
        [body] = to_spot(push_of("contact", labels={"spot_device_id": "abc"}), mapping)
        assert body["device_external_id"] == "bchonod7rihjtvdmd2vg"

    def test_buffer_is_sent_when_configured(self):
        rules = dict(self.mapping.spot)
        rules["co2"] = SpotRule(event_type_id=7, buffer_ms=120000)
        [body] = to_spot(push_of("co2"), replace(self.mapping, spot=rules))
        assert body["buffer"] == 120000


class TestTimes:
    @pytest.mark.parametrize(
        ("text", "seconds", "millis"),
        [
            ("2024-05-29T10:34:03.970415Z", TS, "2024-05-29T10:34:03.970Z"),
            ("2024-05-29T10:34:03Z", TS, "2024-05-29T10:34:03.000Z"),
            ("2024-05-29T12:34:03.9999999+02:00", TS, "2024-05-29T10:34:03.999Z"),
            ("2024-05-29T10:34:03.1z", TS, "2024-05-29T10:34:03.100Z"),
        ],
    )
    def test_conversions(self, text, seconds, millis):
        assert epoch_seconds(text) == seconds
        assert rfc3339_millis(text) == millis

    @pytest.mark.parametrize("text", ["", "2024-05-29", "2024-13-01T00:00:00Z", "1716978843", "2024-05-29T10:34:03"])
    def test_rejects_non_rfc3339(self, text):
        with pytest.raises(InvalidEvent):
            epoch_seconds(text)


def test_pure_modules_do_no_io():
    for module in (readings_module, translate_module, mapping_module):
        names = vars(module)
        for forbidden in ("flask", "redis", "requests", "time", "Redis", "socket"):
            assert forbidden not in names, f"{module.__name__} imports {forbidden}"
