"""Parsing of a verified DT push body into the few fields the receive path needs. Pure.

A DT push body is ``{"event": {...}, "labels": {...}, "metadata": {...}}`` (see
``shared/seeds/001`` and the protocol notes). The receiver only needs the event id (to
dedupe), the type and the device (to log); the whole body travels to the workers
unchanged. Unknown event types are accepted: DT keeps adding them and the workers
decide what to do with each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from connector.core.errors import MalformedPush

MAX_EVENT_ID_LENGTH = 256
"""DT event ids are ~20 characters; a much longer one is not a DT id."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and arrays accepted (the body itself is level 1). DT's pushes nest
five levels deep. Every JSON reader on the job side handles this with room to spare: orjson stops
at 1024 levels and the standard library near 990, and the job wraps the body two levels deeper."""


DT_EVENT_DEVICE_TYPES: dict[str, str] = {
    "touch": "touch",
    "temperature": "temperature",
    "objectPresent": "proximity",
    "humidity": "humidity",
    "objectPresentCount": "proximityCounter",
    "touchCount": "touchCounter",
    "waterPresent": "waterDetector",
    "co2": "co2",
    "pressure": "co2",
    "motion": "motion",
    "deskOccupancy": "deskOccupancy",
    "contact": "contact",
    "probeWireStatus": "temperature",
    "networkStatus": "temperature",
    "batteryStatus": "temperature",
    "labelsChanged": "temperature",
    "connectionStatus": "ccon",
    "ethernetStatus": "ccon",
    "cellularStatus": "ccon",
}
"""Every event type a DT Data Connector can push (DT's event docs; 19 types), with the device
type that emits it."""

DT_EVENT_TYPES = tuple(DT_EVENT_DEVICE_TYPES)

DEVICE_MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature", "probeWireStatus"),
    "proximity": ("objectPresent",),
    "touch": ("touch",),
    "humidity": ("humidity",),
    "proximityCounter": ("objectPresentCount",),
    "touchCounter": ("touchCount",),
    "waterDetector": ("waterPresent",),
    "co2": ("co2", "pressure", "humidity", "temperature"),
    "motion": ("motion",),
    "deskOccupancy": ("deskOccupancy",),
    "contact": ("contact",),
    "ccon": ("connectionStatus", "ethernetStatus", "cellularStatus"),
}
"""DT device type → the event types it measures with, its own first (DT's device docs; every sensor also
sends touch, networkStatus, batteryStatus and labelsChanged). What a device *is* at a destination (its
MOOST device type) follows the first of these the mapping forwards there."""


@dataclass(frozen=True, slots=True)
class Push:
    """The fields of a push the receive path acts on."""

    event_id: str
    event_type: str
    device_id: str


def parse_push(body: bytes) -> Push:
    """Parse and check the envelope of a push body.

    Raises:
        MalformedPush: the body is not strict UTF-8 JSON, not an object, nests deeper than
            ``MAX_JSON_DEPTH``, or lacks ``event.eventId`` / ``event.eventType`` as non-empty strings.
    """
    try:
        # orjson: strict RFC 8259 (no NaN/Infinity), UTF-8 only, bounded nesting; ~3x json's speed.
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPush("not-utf8", "body is not valid UTF-8") from None
        raise MalformedPush("not-json", "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise MalformedPush("not-an-object", "body must be a JSON object")
    # Counting brackets is C-speed; only a body with more of them than the limit is walked.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and json_depth(doc) > MAX_JSON_DEPTH:
        raise MalformedPush("too-deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    event = doc.get("event")
    if not isinstance(event, dict):
        raise MalformedPush("no-event", "body has no 'event' object")
    event_id = event.get("eventId")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise MalformedPush("no-event-id", "event.eventId must be a non-empty string")
    event_type = event.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedPush("no-event-type", "event.eventType must be a non-empty string")
    for key in ("labels", "metadata"):
        if key in doc and not isinstance(doc[key], dict):
            raise MalformedPush(f"bad-{key}", f"'{key}' must be a JSON object")
    return Push(event_id=event_id, event_type=event_type, device_id=device_of(doc))


def json_depth(doc: Any) -> int:
    """How deeply ``doc`` nests objects and arrays (a scalar is 0, ``{}`` is 1). Pure."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def device_of(doc: dict[str, Any]) -> str:
    """The DT device id: ``metadata.deviceId``, else the last segment of ``targetName``."""
    metadata = doc.get("metadata")
    if isinstance(metadata, dict):
        device = metadata.get("deviceId")
        if isinstance(device, str) and device:
            return device
    target = doc["event"].get("targetName")
    if isinstance(target, str) and "/devices/" in target:
        return target.rsplit("/", 1)[-1]
    return ""
