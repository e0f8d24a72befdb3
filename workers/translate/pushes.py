"""Reading a verified push for the translators: its event, labels, device, readings and times. Pure.

Every destination's translator (``workers.moost.events``, ``workers.spot.events``) and sync
(``workers.moost.sync``, ``workers.spot.sync``) reads a push through these functions, and says
what cannot be sent by raising:

* ``Skipped`` — the mapping says this type does not go to that destination, or the device lacks
  what routing needs (no building): counted and logged, not an error;
* ``InvalidEvent`` — the event cannot be made valid for the destination (a field would break the
  API's documented pattern): a permanent failure, never retried, because sending it would only
  earn a 400 again and again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.core.events import device_of
from connector.core.times import format_rfc3339, parse_rfc3339
from workers.translate.readings import Reading, UnreadableEvent, readings_of

MAX_EPOCH_SECONDS = 10**11  # far beyond any date in seconds; catches milliseconds sent as seconds


class Skipped(Exception):
    """Not for this destination; ``reason`` is a short slug, ``detail`` a sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEvent(Exception):
    """The event cannot be delivered as it is (permanent failure); the message says why."""


def event_of(push: dict[str, Any]) -> dict[str, Any]:
    """The push's ``event`` envelope; InvalidEvent when it has none with an ``eventType``."""
    event = push.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
        raise InvalidEvent("push has no event with an eventType")
    return event


def labels_of(push: dict[str, Any]) -> dict[str, str]:
    """The push's labels as text (none: empty)."""
    labels = push.get("labels")
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def device_id_of(push: dict[str, Any]) -> str:
    """The DT device id (``connector.core.events.device_of``); InvalidEvent when the push names none."""
    event_of(push)  # device_of expects a validated envelope
    device = device_of(push)
    if not device:
        raise InvalidEvent("event names no device (no metadata.deviceId or targetName)")
    return device


def readings_to_send(event: dict[str, Any]) -> list[Reading]:
    """The event's readings (``workers.translate.readings``), each with a time; InvalidEvent otherwise."""
    try:
        readings = readings_of(event)
    except UnreadableEvent as exc:
        raise InvalidEvent(str(exc)) from None
    for reading in readings:
        if not reading.at:
            raise InvalidEvent("event has no time")
    return readings


def is_backfilled(push: dict[str, Any]) -> bool:
    """True for DT's backfilled events (uploaded after the sensor was offline)."""
    event = event_of(push)
    data = event.get("data")
    inner = data.get(event["eventType"]) if isinstance(data, dict) else None
    return isinstance(inner, dict) and inner.get("isBackfilled") is True


def is_old(push: dict[str, Any], *, now: float, max_age_s: float) -> bool:
    """True when the event happened more than ``max_age_s`` before ``now`` (or its time is unreadable):
    MOOST takes such events on its historical endpoint."""
    at = event_of(push).get("timestamp")
    try:
        happened = moment(at).timestamp() if isinstance(at, str) else None
    except InvalidEvent:
        happened = None
    return happened is None or now - happened > max_age_s


def changed_labels(push: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The device's labels after a labelsChanged push (the push's labels updated by the event's
    ``added``/``modified``/``removed``) and the keys that changed."""
    event = push.get("event") or {}
    data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
    labels = {str(k): str(v) for k, v in (push.get("labels") or {}).items()}
    changed: set[str] = set()
    for part in ("added", "modified"):
        values = data.get(part)
        if isinstance(values, dict):
            labels.update({str(k): str(v) for k, v in values.items()})
            changed.update(str(k) for k in values)
    removed = data.get("removed")
    if isinstance(removed, list):
        for key in removed:
            labels.pop(str(key), None)
            changed.add(str(key))
    return labels, changed


def epoch_seconds(at: str) -> int:
    """Whole Unix seconds of an RFC 3339 time (any fraction, any offset): MOOST's ``timestamp``.

    Raises:
        InvalidEvent: not an RFC 3339 time, or implausibly far in the future.
    """
    seconds = int(moment(at).timestamp())
    if not 0 <= seconds < MAX_EPOCH_SECONDS:
        raise InvalidEvent(f"time {at!r} is out of range")
    return seconds


def rfc3339_millis(at: str) -> str:
    """An RFC 3339 time in UTC with exactly millisecond precision (``…:05.533Z``, truncated): Spot's
    ``timestamp``.

    Raises:
        InvalidEvent: not an RFC 3339 time.
    """
    return format_rfc3339(moment(at), digits=3)


def moment(at: str) -> datetime:
    """``at`` as an aware datetime; InvalidEvent when it is not an RFC 3339 time."""
    try:
        return parse_rfc3339(at)
    except (ValueError, OverflowError):
        raise InvalidEvent(f"time {at!r} is not an RFC 3339 time") from None


def event_type_of(push: dict[str, Any]) -> str:
    """The push's ``eventType`` ("" when it names none)."""
    event = push.get("event")
    return str(event.get("eventType")) if isinstance(event, dict) else ""
