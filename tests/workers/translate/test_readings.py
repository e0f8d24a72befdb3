"""Readings: every DT event type read into named values, units and sample times."""

from __future__ import annotations

import pytest

from connector.core.events import DT_EVENT_TYPES
from tests.support.samples import push_of
from workers.translate import readings as readings_module
from workers.translate.readings import VALUE_NAMES, readings_of


class TestReadings:
    @pytest.mark.parametrize("event_type", DT_EVENT_TYPES)
    def test_every_type_reads_its_documented_fields(self, event_type):
        readings = readings_of(push_of(event_type)["event"])
        assert len(readings) == 1
        if event_type == "labelsChanged":  # named after the labels themselves
            assert all(name.startswith(("added_", "modified_", "removed")) for name in readings[0].values)
        else:
            assert readings[0].values and set(readings[0].values) <= VALUE_NAMES[event_type]
        assert readings[0].at

    def test_values_and_units(self):
        assert readings_of(push_of("temperature")["event"])[0].values == {"temperature_c": 21.45}
        assert readings_of(push_of("humidity")["event"])[0].values == {
            "temperature_c": 22.1,
            "relative_humidity_pct": 41.5,
        }
        assert readings_of(push_of("co2")["event"])[0].values == {"ppm": 612}
        assert readings_of(push_of("pressure")["event"])[0].values == {"pascal": 101325.5}
        assert readings_of(push_of("touchCount")["event"])[0].values == {"total": 12}
        assert readings_of(push_of("contact")["event"])[0].values == {"state": "OPEN"}

    def test_backfilled_temperature_gives_one_reading_per_sample(self):
        data = {
            "temperature": {
                "value": 20.0,
                "updateTime": "2024-05-29T10:40:00Z",
                "samples": [
                    {"value": 20.0, "sampleTime": "2024-05-29T10:30:00Z"},
                    {"value": 19.5, "sampleTime": "2024-05-29T10:15:00Z"},
                ],
                "isBackfilled": True,
            }
        }
        readings = readings_of(push_of("temperature", data=data)["event"])
        assert [(r.at, r.values["temperature_c"]) for r in readings] == [
            ("2024-05-29T10:30:00Z", 20.0),
            ("2024-05-29T10:15:00Z", 19.5),
        ]

    def test_labels_changed_uses_the_envelope_time(self):
        reading = readings_of(push_of("labelsChanged")["event"])[0]
        assert reading.at == "2024-05-29T10:34:04.120000Z"
        assert reading.values == {"added_room": "3.14", "modified_name": "Fridge 4", "removed": "old"}

    @pytest.mark.parametrize(
        ("event_type", "data"),
        [
            ("temperature", {"temperature": {"value": "warm"}}),
            ("temperature", {}),
            ("co2", {"co2": {"ppm": None}}),
            ("contact", {"contact": {"state": ""}}),
            ("humidity", {"humidity": {"isBackfilled": True, "samples": []}}),
        ],
    )
    def test_broken_data_is_unreadable(self, event_type, data):
        with pytest.raises(readings_module.UnreadableEvent):
            readings_of(push_of(event_type, data=data)["event"])
