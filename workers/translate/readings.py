"""What each DT event type measured, as flat named values with units. Pure.

One small extractor per DT event type, kept in a registry (``EXTRACTORS``). Each turns
the event's ``data`` into ``Reading``s: a time (RFC 3339, as DT wrote it) and values
whose names carry their unit (``temperature_c``, ``relative_humidity_pct``, ``ppm``,
``pascal``, ``total``, ``state`` …). Destinations then pick and format these values;
nothing here knows about MOOST or Spot.

Live temperature and humidity events give one reading (the event's value at
``updateTime``). Backfilled ones (``isBackfilled: true``, uploaded after a sensor was
offline) give one reading per ``samples[]`` entry at its ``sampleTime``, because that
is when each value was measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Value = float | int | str | bool


@dataclass(frozen=True)
class Reading:
    """Values measured at one moment."""

    at: str
    values: dict[str, Value] = field(default_factory=dict)


class UnreadableEvent(Exception):
    """The event's data lacks what its type promises (permanent: retrying cannot help)."""


Extractor = Callable[[dict[str, Any], str], list[Reading]]
EXTRACTORS: dict[str, Extractor] = {}
"""DT event type → extractor(data, event timestamp) → readings."""


def extracts(event_type: str) -> Callable[[Extractor], Extractor]:
    """Register the decorated function as the extractor for ``event_type``."""

    def register(function: Extractor) -> Extractor:
        EXTRACTORS[event_type] = function
        return function

    return register


def readings_of(event: dict[str, Any]) -> list[Reading]:
    """The readings of a DT ``event`` envelope (``eventType``, ``data``, ``timestamp``).

    Raises:
        UnreadableEvent: unknown type, or data missing what the type promises.
    """
    event_type = event.get("eventType")
    extractor = EXTRACTORS.get(event_type) if isinstance(event_type, str) else None
    if extractor is None:
        raise UnreadableEvent(f"no extractor for event type {event_type!r}")
    data = event.get("data")
    if not isinstance(data, dict):
        raise UnreadableEvent("event has no data object")
    timestamp = event.get("timestamp")
    return extractor(data, timestamp if isinstance(timestamp, str) else "")


def _keyed(data: dict[str, Any], key: str) -> dict[str, Any]:
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise UnreadableEvent(f"data has no {key!r} object")
    return inner


def _number(obj: dict[str, Any], key: str) -> float | int:
    value = obj.get(key)
    if type(value) not in (int, float):
        raise UnreadableEvent(f"{key!r} is not a number")
    return value  # type: ignore[return-value]


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise UnreadableEvent(f"{key!r} is not a non-empty string")
    return value


def _time(obj: dict[str, Any], fallback: str) -> str:
    at = obj.get("updateTime")
    return at if isinstance(at, str) and at else fallback


def _single(key: str, name: str, field: str, read: Callable[[dict[str, Any], str], Value] = _number) -> Extractor:
    """An extractor for types that report one value: ``data[key][field]`` as ``name``."""

    def extract(data: dict[str, Any], timestamp: str) -> list[Reading]:
        inner = _keyed(data, key)
        return [Reading(_time(inner, timestamp), {name: read(inner, field)})]

    return extract


for _state_type in ("objectPresent", "waterPresent", "motion", "contact", "probeWireStatus"):
    EXTRACTORS[_state_type] = _single(_state_type, "state", "state", _text)
EXTRACTORS["objectPresentCount"] = _single("objectPresentCount", "total", "total")
EXTRACTORS["touchCount"] = _single("touchCount", "total", "total")
EXTRACTORS["co2"] = _single("co2", "ppm", "ppm")
EXTRACTORS["pressure"] = _single("pressure", "pascal", "pascal")
EXTRACTORS["batteryStatus"] = _single("batteryStatus", "battery_pct", "percentage")
EXTRACTORS["connectionStatus"] = _single("connectionStatus", "connection", "connection", _text)


@extracts("deskOccupancy")
def _desk_occupancy(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "deskOccupancy")
    values: dict[str, Value] = {"state": _text(inner, "state")}
    remarks = inner.get("remarks")
    if isinstance(remarks, list) and remarks:
        values["remarks"] = ",".join(str(r) for r in remarks)
    return [Reading(_time(inner, timestamp), values)]


@extracts("touch")
def _touch(data: dict[str, Any], timestamp: str) -> list[Reading]:
    return [Reading(_time(_keyed(data, "touch"), timestamp), {"touched": True})]


@extracts("temperature")
def _temperature(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "temperature")
    if inner.get("isBackfilled") is True:
        return _samples(inner, {"temperature_c": "value"})
    return [Reading(_time(inner, timestamp), {"temperature_c": _number(inner, "value")})]


@extracts("humidity")
def _humidity(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "humidity")
    names = {"temperature_c": "temperature", "relative_humidity_pct": "relativeHumidity"}
    if inner.get("isBackfilled") is True:
        return _samples(inner, names)
    return [Reading(_time(inner, timestamp), {name: _number(inner, key) for name, key in names.items()})]


def _samples(inner: dict[str, Any], names: dict[str, str]) -> list[Reading]:
    samples = inner.get("samples")
    if not isinstance(samples, list) or not samples:
        raise UnreadableEvent("backfilled event has no samples")
    readings = []
    for sample in samples:
        if not isinstance(sample, dict):
            raise UnreadableEvent("sample is not an object")
        readings.append(
            Reading(_text(sample, "sampleTime"), {name: _number(sample, key) for name, key in names.items()})
        )
    return readings


@extracts("networkStatus")
def _network_status(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "networkStatus")
    values: dict[str, Value] = {
        "signal_strength_pct": _number(inner, "signalStrength"),
        "rssi_dbm": _number(inner, "rssi"),
    }
    if isinstance(inner.get("transmissionMode"), str):
        values["transmission_mode"] = inner["transmissionMode"]
    return [Reading(_time(inner, timestamp), values)]


@extracts("ethernetStatus")
def _ethernet_status(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "ethernetStatus")
    values: dict[str, Value] = {}
    for name, key in (("mac_address", "macAddress"), ("ip_address", "ipAddress")):
        if isinstance(inner.get(key), str):
            values[name] = inner[key]
    values["error_count"] = len(inner.get("errors") or [])
    return [Reading(_time(inner, timestamp), values)]


@extracts("cellularStatus")
def _cellular_status(data: dict[str, Any], timestamp: str) -> list[Reading]:
    inner = _keyed(data, "cellularStatus")
    return [
        Reading(
            _time(inner, timestamp),
            {"signal_strength_pct": _number(inner, "signalStrength"), "error_count": len(inner.get("errors") or [])},
        )
    ]


@extracts("labelsChanged")
def _labels_changed(data: dict[str, Any], timestamp: str) -> list[Reading]:
    # Not keyed by type and without updateTime (DT event docs): use the envelope time.
    values: dict[str, Value] = {}
    for part in ("added", "modified"):
        changed = data.get(part)
        if isinstance(changed, dict):
            for key, value in changed.items():
                values[f"{part}_{key}"] = str(value)
    removed = data.get("removed")
    if isinstance(removed, list) and removed:
        values["removed"] = ",".join(str(key) for key in removed)
    return [Reading(timestamp, values)]


class ValueSpec(NamedTuple):
    """What one named value is: its JSON type and whether every reading of its type carries it."""

    json_type: str
    always: bool = True


_NUMBER = ValueSpec("number")
_TEXT = ValueSpec("string")
_COUNT = ValueSpec("integer")

VALUE_SPECS: dict[str, dict[str, ValueSpec]] = {
    "touch": {"touched": ValueSpec("boolean")},
    "temperature": {"temperature_c": _NUMBER},
    "objectPresent": {"state": _TEXT},
    "humidity": {"temperature_c": _NUMBER, "relative_humidity_pct": _NUMBER},
    "objectPresentCount": {"total": _NUMBER},
    "touchCount": {"total": _NUMBER},
    "waterPresent": {"state": _TEXT},
    "co2": {"ppm": _NUMBER},
    "pressure": {"pascal": _NUMBER},
    "motion": {"state": _TEXT},
    "deskOccupancy": {"state": _TEXT, "remarks": ValueSpec("string", always=False)},
    "contact": {"state": _TEXT},
    "probeWireStatus": {"state": _TEXT},
    "networkStatus": {
        "signal_strength_pct": _NUMBER,
        "rssi_dbm": _NUMBER,
        "transmission_mode": ValueSpec("string", always=False),
    },
    "batteryStatus": {"battery_pct": _NUMBER},
    "labelsChanged": {},
    "connectionStatus": {"connection": _TEXT},
    "ethernetStatus": {
        "mac_address": ValueSpec("string", always=False),
        "ip_address": ValueSpec("string", always=False),
        "error_count": _COUNT,
    },
    "cellularStatus": {"signal_strength_pct": _NUMBER, "error_count": _COUNT},
}
"""The values each type's readings carry, typed (what Spot's generated event-type schemas declare).

Numbers DT documents as integers are still ``number``: the extractors pass on whatever JSON number DT
sends, and a schema stricter than the extractor would turn a harmless ``21.0`` into a rejected event.
``labelsChanged`` values are named after the labels (``added_<key>``, ``modified_<key>``, ``removed``),
so none can be listed."""

VALUE_NAMES: dict[str, frozenset[str]] = {event_type: frozenset(specs) for event_type, specs in VALUE_SPECS.items()}
"""The value names each type's readings can carry (what a mapping may refer to)."""
