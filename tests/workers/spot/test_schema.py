"""The Spot event type schemas ``setup spot`` writes accept exactly what ``to_spot`` sends (checked with
jsonschema, the validator library, as Spot validates every ingested event)."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from tests.support.samples import DATA, push_of
from workers.spot.events import to_spot
from workers.spot.schema import (
    attributes_schema,
    differences,
    event_type_body,
    event_type_name,
    example_attributes,
    forwarded_to_spot,
)
from workers.translate.mapping import load_mapping
from workers.translate.readings import VALUE_SPECS, readings_of

MAPPING = load_mapping()
IDS = {event_type: 100 + n for n, event_type in enumerate(forwarded_to_spot(MAPPING))}
RESOLVED = MAPPING.with_spot_ids(IDS)
LABEL_KEYS = ["name", "moost_building", "spot_device_id"]


def validator(event_type: str, label_keys: list[str] = LABEL_KEYS) -> jsonschema.Draft202012Validator:
    schema = attributes_schema(event_type, label_keys)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_default_mapping_forwards_a_dozen_types_to_spot():
    assert len(IDS) == 12 and "labelsChanged" not in IDS and "batteryStatus" not in IDS


@pytest.mark.parametrize("event_type", sorted(IDS))
def test_translator_output_for_every_sample_validates(event_type: str):
    push = push_of(event_type, labels={"name": "Fridge 3", "moost_building": "site-42", "spot_device_id": "17"})
    [body] = to_spot(push, RESOLVED)
    assert body["integration_event_type_id"] == IDS[event_type]
    errors = list(validator(event_type).iter_errors(body["attributes"]))
    assert errors == []


@pytest.mark.parametrize("event_type", ["temperature", "humidity"])
def test_backfilled_samples_validate(event_type: str):
    data = copy.deepcopy(DATA[event_type])
    inner = data[event_type]
    inner["isBackfilled"] = True
    inner["samples"] = [dict(inner["samples"][0], sampleTime="2024-05-29T10:00:00Z")] * 3
    bodies = to_spot(push_of(event_type, data=data, labels={}), RESOLVED)
    assert len(bodies) == 3
    for body in bodies:
        validator(event_type).validate(body["attributes"])


def test_optional_values_may_be_absent_and_unknown_labels_pass():
    data = copy.deepcopy(DATA["deskOccupancy"])
    del data["deskOccupancy"]["remarks"]
    [body] = to_spot(push_of("deskOccupancy", data=data, labels={"floor": "3"}), RESOLVED)
    assert "remarks" not in body["attributes"] and body["attributes"]["label_floor"] == "3"
    validator("deskOccupancy").validate(body["attributes"])


def test_the_schema_rejects_what_the_translator_would_never_send():
    check = validator("temperature")
    good = to_spot(push_of("temperature"), RESOLVED)[0]["attributes"]
    assert not list(check.iter_errors(good))
    assert list(check.iter_errors({**good, "temperature_c": "21.4"}))  # a number as text
    assert list(check.iter_errors({k: v for k, v in good.items() if k != "device_id"}))
    assert list(check.iter_errors({**good, "label_name": 3}))


@pytest.mark.parametrize("event_type", sorted(VALUE_SPECS))
def test_value_specs_match_what_the_extractors_give(event_type: str):
    event = push_of(event_type)["event"]
    for reading in readings_of(event):
        specs = VALUE_SPECS[event_type]
        if event_type != "labelsChanged":
            assert set(reading.values) <= set(specs)
        for name, spec in specs.items():
            assert name in reading.values or not spec.always
        validator(event_type, []).validate(
            {**reading.values, "device_id": "d", "project_id": "p", "dt_event_type": event_type}
        )


@pytest.mark.parametrize("event_type", sorted(VALUE_SPECS))
def test_example_attributes_validate(event_type: str):
    validator(event_type).validate(example_attributes(event_type, LABEL_KEYS))


def test_event_type_body_names_defaults_and_device_template():
    body = event_type_body("contact", MAPPING.spot["contact"], MAPPING, ["name"])
    assert body["name"] == event_type_name("contact") == "DT contact"
    assert body["duration"] == 10000 and "buffer" not in body
    assert body["external_device_id_template"] == "{device_id}"
    assert "device_id" in body["schema"]["required"]
    assert all(len(event_type_name(t)) <= 40 for t in VALUE_SPECS)


def test_prefix_goes_into_the_template_unless_it_has_braces():
    from dataclasses import replace

    prefixed = replace(MAPPING, spot_device_prefix="dt-")
    assert event_type_body("touch", MAPPING.spot["touch"], prefixed, [])["external_device_id_template"] == (
        "dt-{device_id}"
    )
    braced = replace(MAPPING, spot_device_prefix="{x}")
    assert "external_device_id_template" not in event_type_body("touch", MAPPING.spot["touch"], braced, [])


def test_differences_name_the_fields_that_changed():
    body = event_type_body("co2", MAPPING.spot["co2"], MAPPING, ["name"])
    assert differences({**body, "id": 5}, body) == []
    stale = {**body, "schema": attributes_schema("co2", []), "name": "mine"}
    assert differences(stale, body) == ["name", "schema"]


def test_mapping_ids_override_recorded_ones():
    from dataclasses import replace

    from workers.translate.mapping import SpotRule

    pinned = replace(MAPPING, spot={**MAPPING.spot, "co2": SpotRule(event_type_id=9)})
    resolved = pinned.with_spot_ids({"co2": 55, "touch": 56})
    assert resolved.spot["co2"].event_type_id == 9 and resolved.spot["touch"].event_type_id == 56
    assert resolved.spot["batteryStatus"].skip  # skipped types stay skipped
