"""DT push → MOOST "Add Events" bodies. Pure: no I/O, no clock.

Field rules follow MOOST's published spec (shared/reference/downstream-apis.md §1): ``timestamp`` is
epoch **seconds**; ids must match MOOST's patterns, or the event is ``InvalidEvent`` rather than a
400 earned again on every retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workers.translate.mapping import EventMapping
from workers.translate.pushes import (
    InvalidEvent,
    Skipped,
    device_id_of,
    epoch_seconds,
    event_of,
    is_backfilled,
    labels_of,
    readings_to_send,
)

MOOST_CUSTOMER_ID = re.compile(r"[a-zA-Z0-9]{24}")
MOOST_BUILDING_ID = re.compile(r"[a-zA-Z0-9:._-]{1,100}")
MOOST_DEVICE_ID = re.compile(r"[a-zA-Z0-9:._-]{3,64}")
MOOST_NAME_MAX = 100


@dataclass(frozen=True)
class MoostBatch:
    """MOOST events for one push and the endpoint they belong to."""

    historical: bool
    events: list[dict[str, Any]]


def to_moost(push: dict[str, Any], mapping: EventMapping, *, customer_id: str) -> MoostBatch:
    """MOOST ``Event`` bodies for ``push``.

    Live events go to ``POST /events/v1`` one by one; backfilled ones (and replays,
    decided by the caller) to ``POST /events/historical/v1`` as a batch.

    Raises:
        Skipped: the type is not mapped to MOOST, or the device has no building.
        InvalidEvent: a field would violate MOOST's published patterns.
    """
    event = event_of(push)
    rule = mapping.moost_rule(event["eventType"])
    if rule.skip is not None:
        raise Skipped("not-mapped", rule.skip)
    if rule.sync:
        raise Skipped("not-mapped", f"{event['eventType']} updates the device's registration; it is not an event")
    labels = labels_of(push)
    device_id = device_id_of(push)
    building = labels.get(mapping.building_label) or mapping.default_building
    if not building:
        raise Skipped("no-building", f"device has no {mapping.building_label!r} label and no default building is set")
    if not MOOST_CUSTOMER_ID.fullmatch(customer_id):
        raise InvalidEvent("customerId must be 24 letters or digits (MOOST_CUSTOMER_ID)")
    if not MOOST_BUILDING_ID.fullmatch(building):
        raise InvalidEvent(f"customerBuildingId {building!r} must match ^[a-zA-Z0-9:._-]{{1,100}}$")
    if not MOOST_DEVICE_ID.fullmatch(device_id):
        raise InvalidEvent(f"deviceId {device_id!r} must match ^[a-zA-Z0-9:._-]{{3,64}}$")
    name = (labels.get("name") or "").strip() or device_id
    events = []
    for reading in readings_to_send(event):
        raw = reading.values.get(rule.value)
        if raw is None:
            raise InvalidEvent(f"reading has no {rule.value!r} value")
        if rule.value_map:
            if str(raw) not in rule.value_map:
                raise InvalidEvent(f"{rule.value} {raw!r} has no number in the mapping's map")
            value: float = rule.value_map[str(raw)]
        elif type(raw) in (int, float):
            value = raw  # type: ignore[assignment]
        else:
            raise InvalidEvent(f"{rule.value} {raw!r} is not a number")
        body: dict[str, Any] = {
            "timestamp": epoch_seconds(reading.at),
            "customerId": customer_id,
            "customerBuildingId": building,
            "deviceId": device_id,
            "deviceName": name[:MOOST_NAME_MAX],  # cosmetic: shorten rather than fail
            "value": value,
            "type": rule.type,
        }
        if rule.source:
            body["source"] = rule.source
        events.append(body)
    return MoostBatch(historical=is_backfilled(push), events=events)
