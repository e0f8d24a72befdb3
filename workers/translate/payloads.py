"""DT push → MOOST events and Spot AI integration events. Pure: no I/O, no clock.

``to_moost`` and ``to_spot`` take a push body (``{"event", "labels", "metadata"}``) and
the validated ``Mapping`` and return request payloads, or raise:

* ``Skipped`` — the mapping says this type does not go to that destination, or the
  device lacks what routing needs (no building): counted and logged, not an error;
* ``InvalidEvent`` — the event cannot be made valid for the destination (a field would
  break the API's documented pattern): a permanent failure, never retried, because
  sending it would only earn a 400 again and again.

Field rules follow the APIs' published specs (see shared/reference/downstream-apis.md):
MOOST ``timestamp`` is epoch **seconds**; Spot ``timestamp`` is RFC 3339 with milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.events import device_of
from connector.times import format_rfc3339, parse_rfc3339
from workers.translate.mapping import Mapping
from workers.translate.readings import Reading, UnreadableEvent, readings_of

MOOST_CUSTOMER_ID = re.compile(r"[a-zA-Z0-9]{24}")
MOOST_BUILDING_ID = re.compile(r"[a-zA-Z0-9:._-]{1,100}")
MOOST_DEVICE_ID = re.compile(r"[a-zA-Z0-9:._-]{3,64}")
MOOST_NAME_MAX = 100
SPOT_EXTERNAL_ID_MAX = 255
SPOT_INT32_MAX = 2**31 - 1
SPOT_DEVICE_ID = re.compile(r"[0-9]{1,10}")
MAX_EPOCH_SECONDS = 10**11  # far beyond any date in seconds; catches milliseconds sent as seconds



class Skipped(Exception):
    """Not for this destination; ``reason`` is a short slug, ``detail`` a sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEvent(Exception):
    """The event cannot be delivered as it is (permanent failure); the message says why."""


@dataclass(frozen=True)
class MoostBatch:
    """MOOST events for one push and the endpoint they belong to."""

    historical: bool
    events: list[dict[str, Any]]


def to_moost(push: dict[str, Any], mapping: Mapping, *, customer_id: str) -> MoostBatch:
    """MOOST ``Event`` bodies for ``push``.

    Live events go to ``POST /events/v1`` one by one; backfilled ones (and replays,
    decided by the caller) to ``POST /events/historical/v1`` as a batch.

    Raises:
        Skipped: the type is not mapped to MOOST, or the device has no building.
        InvalidEvent: a field would violate MOOST's published patterns.
    """
    event = _event(push)
    rule = mapping.moost_rule(event["eventType"])
    if rule.skip is not None:
        raise Skipped("not-mapped", rule.skip)
    if rule.sync:
        raise Skipped("not-mapped", f"{event['eventType']} updates the device's registration; it is not an event")
    labels = _labels(push)
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
    for reading in _readings(event):
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


def to_spot(push: dict[str, Any], mapping: Mapping) -> list[dict[str, Any]]:
    """Spot ``Ingest Integration Event`` bodies for ``push`` (one per reading).

    The device is named by ``device_external_id`` (Spot finds or creates it), or, when the
    DT device carries the mapping's ``spot.device_label``, by that ``integration_device_id``;
    such bodies are also valid items for Spot's bulk import.

    Raises:
        Skipped: the type is not mapped to Spot, or its Spot event type id is not set.
        InvalidEvent: the event cannot be expressed (no time, id too long).
    """
    event = _event(push)
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
    labels = _labels(push)
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
    for reading in _readings(event):
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


def device_id_of(push: dict[str, Any]) -> str:
    """The DT device id (``connector.events.device_of``); InvalidEvent when the push names none."""
    _event(push)  # device_of expects a validated envelope
    device = device_of(push)
    if not device:
        raise InvalidEvent("event names no device (no metadata.deviceId or targetName)")
    return device


def is_backfilled(push: dict[str, Any]) -> bool:
    """True for DT's backfilled events (uploaded after the sensor was offline)."""
    event = _event(push)
    data = event.get("data")
    inner = data.get(event["eventType"]) if isinstance(data, dict) else None
    return isinstance(inner, dict) and inner.get("isBackfilled") is True


def is_old(push: dict[str, Any], *, now: float, max_age_s: float) -> bool:
    """True when the event happened more than ``max_age_s`` before ``now`` (or its time is unreadable):
    MOOST takes such events on its historical endpoint. Pure."""
    at = _event(push).get("timestamp")
    try:
        happened = _moment(at).timestamp() if isinstance(at, str) else None
    except InvalidEvent:
        happened = None
    return happened is None or now - happened > max_age_s


def epoch_seconds(at: str) -> int:
    """Whole Unix seconds of an RFC 3339 time (any fraction, any offset).

    Raises:
        InvalidEvent: not an RFC 3339 time, or implausibly far in the future.
    """
    seconds = int(_moment(at).timestamp())
    if not 0 <= seconds < MAX_EPOCH_SECONDS:
        raise InvalidEvent(f"time {at!r} is out of range")
    return seconds


def rfc3339_millis(at: str) -> str:
    """An RFC 3339 time in UTC with exactly millisecond precision (``…:05.533Z``, truncated).

    Raises:
        InvalidEvent: not an RFC 3339 time.
    """
    return format_rfc3339(_moment(at), digits=3)


def _moment(at: str) -> datetime:
    try:
        return parse_rfc3339(at)
    except (ValueError, OverflowError):
        raise InvalidEvent(f"time {at!r} is not an RFC 3339 time") from None


def _event(push: dict[str, Any]) -> dict[str, Any]:
    event = push.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
        raise InvalidEvent("push has no event with an eventType")
    return event


def _labels(push: dict[str, Any]) -> dict[str, str]:
    labels = push.get("labels")
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def _project_of(event: dict[str, Any]) -> str:
    target = event.get("targetName")
    if isinstance(target, str) and target.startswith("projects/"):
        return target.split("/")[1]
    return ""


def _readings(event: dict[str, Any]) -> list[Reading]:
    try:
        readings = readings_of(event)
    except UnreadableEvent as exc:
        raise InvalidEvent(str(exc)) from None
    for reading in readings:
        if not reading.at:
            raise InvalidEvent("event has no time")
    return readings
