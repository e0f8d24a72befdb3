"""The Spot AI integration event type each forwarded DT event type needs. Pure.

Spot validates every ingested event's ``attributes`` against its event type's JSON Schema, so the
schema here is generated from what ``workers.spot.events.to_spot`` emits, never written by hand:

* every reading value of the DT type, typed from ``readings.VALUE_SPECS`` (required when every
  reading carries it);
* ``device_id``, ``project_id``, ``dt_event_type`` (strings, always sent);
* ``label_<key>`` (string) for each label key pushes carry; not required, since a device may lack
  the label. Other properties stay allowed, so a label key added to the Data Connector later does not
  make Spot reject events before ``setup spot`` runs again.

The schema keeps to the core keywords (``type``, ``properties``, ``required``, ``description``):
which ones Spot's meta-schema accepts is not published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.translate.mapping import EventMapping, SpotRule
from workers.translate.readings import VALUE_SPECS

NAME_PREFIX = "DT "
"""Event types are named ``DT <eventType>`` (at most 40 characters, Spot's limit): how ``setup spot``
finds the ones it made when no id was recorded."""

ALWAYS_SENT = ("device_id", "project_id", "dt_event_type")


def event_type_name(event_type: str) -> str:
    return f"{NAME_PREFIX}{event_type}"


def attributes_schema(event_type: str, label_keys: Sequence[str]) -> dict[str, Any]:
    """The JSON Schema of the ``attributes`` ``to_spot`` sends for ``event_type``."""
    specs = VALUE_SPECS[event_type]
    properties: dict[str, Any] = {name: {"type": spec.json_type} for name, spec in sorted(specs.items())}
    properties["device_id"] = {"type": "string", "description": "DT device id"}
    properties["project_id"] = {"type": "string", "description": "DT project id"}
    properties["dt_event_type"] = {"type": "string", "description": "DT event type"}
    for key in label_keys:
        properties[f"label_{key}"] = {"type": "string", "description": f"DT label {key!r}"}
    required = [name for name, spec in sorted(specs.items()) if spec.always] + list(ALWAYS_SENT)
    return {
        "type": "object",
        "description": f"Disruptive Technologies {event_type} event, forwarded by dt-connector",
        "properties": properties,
        "required": required,
    }


def event_type_body(
    event_type: str, rule: SpotRule, mapping: EventMapping, label_keys: Sequence[str]
) -> dict[str, Any]:
    """The body ``setup spot`` creates or updates the event type with (and ``doctor`` compares).

    ``duration``/``buffer`` are the mapping's (also sent with each event); the device template makes
    Spot resolve the same device ``to_spot`` names by ``device_external_id``, for events that name none.
    """
    body: dict[str, Any] = {
        "name": event_type_name(event_type),
        "schema": attributes_schema(event_type, label_keys),
    }
    if rule.duration_ms is not None:
        body["duration"] = rule.duration_ms
    if rule.buffer_ms is not None:
        body["buffer"] = rule.buffer_ms
    prefix = mapping.spot_device_prefix
    if "{" not in prefix and "}" not in prefix:
        body["external_device_id_template"] = prefix + "{device_id}"
    return body


def forwarded_to_spot(mapping: EventMapping) -> list[str]:
    """The DT event types the mapping sends to Spot as events (not skipped, not a device sync)."""
    return [event_type for event_type, rule in mapping.spot.items() if rule.skip is None and not rule.sync]


def differences(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """The fields of an existing event type that differ from ``desired`` (empty: up to date). Pure."""
    changed: list[str] = []
    for field in ("name", "schema", "duration", "buffer", "external_device_id_template"):
        if field in desired and current.get(field) != desired[field]:
            changed.append(field)
    return changed


_EXAMPLES: dict[str, Any] = {"number": 21.5, "integer": 3, "string": "example", "boolean": True}


def example_attributes(event_type: str, label_keys: Sequence[str]) -> dict[str, Any]:
    """Attributes shaped like every ``to_spot`` sends for ``event_type`` (each value present, typed as
    the extractor gives it): what ``doctor`` checks a schema in Spot against. Pure."""
    attributes: dict[str, Any] = {name: _EXAMPLES[spec.json_type] for name, spec in VALUE_SPECS[event_type].items()}
    attributes.update(device_id="example-device", project_id="example-project", dt_event_type=event_type)
    attributes.update({f"label_{key}": "example" for key in label_keys})
    return attributes
