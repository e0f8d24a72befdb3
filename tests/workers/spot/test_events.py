"""The Spot AI translator: every DT event type, Spot's field rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connector.core.events import DT_EVENT_TYPES
from tests.support.samples import PROJECT, push_of
from workers.spot.events import to_spot
from workers.translate.mapping import SpotRule, load_mapping
from workers.translate.pushes import InvalidEvent, Skipped

MAPPING = load_mapping()

TS = 1716978843  # 2024-05-29T10:34:03Z


def with_spot_ids(mapping=MAPPING):
    """The default mapping with a Spot event type id set for every forwarded type."""
    spot = {t: (r if r.skip else replace(r, event_type_id=100 + n)) for n, (t, r) in enumerate(mapping.spot.items())}
    return replace(mapping, spot=spot)


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
