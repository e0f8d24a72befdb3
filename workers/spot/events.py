"""DT push → Spot AI "Ingest Integration Event" bodies. Pure: no I/O, no clock.

Field rules follow Spot Connect's published spec (shared/reference/downstream-apis.md §2):
``timestamp`` is RFC 3339 with milliseconds; a device is named by ``device_external_id`` (Spot
finds or creates it) or, with the mapping's device label, by ``integration_device_id``.
"""

from __future__ import annotations

import re
from typing import Any

from workers.translate.mapping import EventMapping
from workers.translate.pushes import (
    InvalidEvent,
    Skipped,
    device_id_of,
    event_of,
    labels_of,
    readings_to_send,
    rfc3339_millis,
)

SPOT_EXTERNAL_ID_MAX = 255
SPOT_INT32_MAX = 2**31 - 1
SPOT_DEVICE_ID = re.compile(r"[0-9]{1,10}")


def to_spot(push: dict[str, Any], mapping: EventMapping) -> list[dict[str, Any]]:
    """Spot ``Ingest Integration Event`` bodies for ``push`` (one per reading).

    The device is named by ``device_external_id`` (Spot finds or creates it), or, when the
    DT device carries the mapping's ``spot.device_label``, by that ``integration_device_id``;
    such bodies are also valid items for Spot's bulk import.

    Raises:
        Skipped: the type is not mapped to Spot, or its Spot event type id is not set.
        InvalidEvent: the event cannot be expressed (no time, id too long).
    """
    event = event_of(push)
    event_type = event["eventType"]
    rule = mapping.spot_rule(event_type)
    if rule.skip is not None:
        raise Skipped("not-mapped", rule.skip)
    if rule.sync:
        raise Skipped("not-mapped", f"{event_type} updates the device's registration; it is not an event")
    if rule.event_type_id == 0:
        raise Skipped(
            "spot-type-not-set", f"no Spot event type for {event_type}: run `dt-connector setup spot` (or set "
            f"events.{event_type}.spot.event_type_id in the mapping)"
        )
    labels = labels_of(push)
    device_id = device_id_of(push)
    device: dict[str, Any] = {"device_external_id": mapping.spot_device_prefix + device_id}
    spot_device = labels.get(mapping.spot_device_label) if mapping.spot_device_label else None
    if spot_device:
        if not (SPOT_DEVICE_ID.fullmatch(spot_device) and 0 < int(spot_device) <= SPOT_INT32_MAX):
            label = mapping.spot_device_label
            raise InvalidEvent(f"label {label!r} must be a Spot integration device id (got {spot_device!r})")
        device = {"integration_device_id": int(spot_device)}
    elif not 1 <= len(device["device_external_id"]) <= SPOT_EXTERNAL_ID_MAX:
        raise InvalidEvent(f"device_external_id must be 1 to {SPOT_EXTERNAL_ID_MAX} characters")
    metadata = push.get("metadata") if isinstance(push.get("metadata"), dict) else {}
    project_id = (metadata or {}).get("projectId") or _project_of(event)
    bodies = []
    for reading in readings_to_send(event):
        attributes: dict[str, Any] = dict(reading.values)
        attributes["device_id"] = device_id
        attributes["project_id"] = project_id
        attributes["dt_event_type"] = event_type
        for key, value in labels.items():
            attributes[f"label_{key}"] = value
        body: dict[str, Any] = {
            "integration_event_type_id": rule.event_type_id,
            "timestamp": rfc3339_millis(reading.at),
            **device,
            "attributes": attributes,
        }
        if rule.duration_ms is not None:
            body["duration"] = rule.duration_ms
        if rule.buffer_ms is not None:
            body["buffer"] = rule.buffer_ms
        bodies.append(body)
    return bodies


def _project_of(event: dict[str, Any]) -> str:
    target = event.get("targetName")
    if isinstance(target, str) and target.startswith("projects/"):
        return target.split("/")[1]
    return ""
