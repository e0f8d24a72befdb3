"""What a DT device is to MOOST: its building, its ``Device`` entry, its building's details. Pure.

Shared by ``setup moost`` (for the whole fleet, from DT's device list) and the labelsChanged sync
(for one device, from its push), so both register a device the same way:

* building: the device's ``[moost] building_label`` label, else the mapping's default building;
* ``Device``: ``id`` the DT device id, ``name`` its DT ``name`` label (else its id), ``product_name``
  its DT product number (emulated devices have none: ``DT <type>``), ``vendor_name`` Disruptive
  Technologies, ``type`` the mapping's ``source`` for the first event type the device measures that
  goes to MOOST (``connector.core.events.DEVICE_MEASUREMENTS``);
* a building's zip, city, country code and time zone: the mapping's ``[moost.buildings.<id>]``
  table, else the labels its devices carry; missing or conflicting details are reported, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.core.events import DEVICE_MEASUREMENTS
from workers.moost.events import MOOST_BUILDING_ID, MOOST_DEVICE_ID, MOOST_NAME_MAX
from workers.translate.mapping import BUILDING_FIELDS, EventMapping

VENDOR = "Disruptive Technologies"
DEVICE_FIELDS = ("name", "product_name", "vendor_name", "type")
"""The ``Device`` fields the connector owns; anything else on an entry (metadata, …) is left as it is."""

ZIP = re.compile(r"[A-Z0-9 -]{3,10}")
COUNTRY = re.compile(r"[A-Z]{2}")
TIME_ZONE = re.compile(r"[a-zA-Z0-9/_+-]{1,32}")


@dataclass(frozen=True)
class DtDevice:
    """A DT device as the connector needs it (from DT's device list or a push's metadata)."""

    id: str
    type: str
    product_number: str
    labels: dict[str, str]

    @classmethod
    def from_api(cls, device: Mapping[str, Any]) -> DtDevice:
        """From a device of DT's REST API (``name`` = ``projects/<p>/devices/<id>``)."""
        labels = device.get("labels") if isinstance(device.get("labels"), dict) else {}
        return cls(
            id=str(device.get("name", "")).rsplit("/", 1)[-1],
            type=str(device.get("type") or ""),
            product_number=str(device.get("productNumber") or ""),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
        )


def building_of(device: DtDevice, mapping: EventMapping) -> str:
    """The MOOST building a device belongs to ("" for none)."""
    return device.labels.get(mapping.building_label) or mapping.default_building


def moost_device(device: DtDevice, mapping: EventMapping) -> dict[str, Any] | str:
    """The MOOST ``Device`` entry for ``device``, or why it has none (a sentence)."""
    if not MOOST_DEVICE_ID.fullmatch(device.id):
        return f"device id {device.id!r} does not fit MOOST's device id pattern"
    source = None
    for event_type in DEVICE_MEASUREMENTS.get(device.type, ()):
        rule = mapping.moost_rule(event_type)
        if rule.skip is None and not rule.sync:
            source = rule.source
            if source is None:
                return f"the mapping's events.{event_type}.moost has no source (MOOST's device type)"
            break
    if source is None:
        return f"nothing a {device.type or 'device of unknown type'} measures goes to MOOST"
    name = (device.labels.get("name") or "").strip() or device.id
    return {
        "id": device.id,
        "name": name[:MOOST_NAME_MAX],
        "product_name": (device.product_number or f"DT {device.type}")[:MOOST_NAME_MAX],
        "vendor_name": VENDOR,
        "type": source,
    }


def building_body(
    building: str, devices: Iterable[DtDevice], mapping: EventMapping, *, customer_id: str
) -> dict[str, Any] | str:
    """The ``Building`` to create for ``building``, or what is missing (a sentence naming the fix)."""
    if not MOOST_BUILDING_ID.fullmatch(building):
        return f"building id {building!r} does not fit MOOST's pattern [a-zA-Z0-9:._-]{{1,100}}"
    details = dict(mapping.building_details.get(building, {}))
    for field in BUILDING_FIELDS:
        if details.get(field):
            continue
        label = mapping.building_detail_labels[field]
        values = sorted({d.labels[label].strip() for d in devices if d.labels.get(label, "").strip()})
        if len(values) > 1:
            return (
                f"its devices disagree on {field} ({', '.join(values)} in label {label!r}); "
                f'set it in the mapping\'s [moost.buildings."{building}"] table'
            )
        if values:
            details[field] = values[0]
    missing = [f for f in ("zip", "city", "country_code") if not details.get(f)]
    if missing:
        labels = ", ".join(mapping.building_detail_labels[f] for f in missing)
        return (
            f"{', '.join(missing)} unknown: set the DT label(s) {labels} on one of its devices, or add "
            f'[moost.buildings."{building}"] to the mapping'
        )
    body: dict[str, Any] = {
        "customerBuildingId": building,
        "customerId": customer_id,
        "zip": details["zip"].upper(),
        "city": details["city"][:100],
        "countryCode": details["country_code"].upper(),
    }
    if details.get("time_zone"):
        body["timeZoneId"] = details["time_zone"]
    problems = [
        f"{name} {value!r} does not fit MOOST's pattern"
        for name, value, pattern in (
            ("zip", body["zip"], ZIP),
            ("countryCode", body["countryCode"], COUNTRY),
            ("timeZoneId", body.get("timeZoneId", "UTC"), TIME_ZONE),
        )
        if not pattern.fullmatch(value)
    ]
    return "; ".join(problems) if problems else body


def merged_devices(
    current: list[dict[str, Any]], ours: Iterable[dict[str, Any]], *, remove: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """A building's device set with ``ours`` added or brought up to date and the ids in ``remove``
    taken out; every other entry (another integration's devices) kept as it is, in order."""
    wanted = {device["id"]: device for device in ours}
    dropped = set(remove) - set(wanted)
    result = []
    for entry in current:
        entry_id = entry.get("id")
        if entry_id in dropped:
            continue
        if entry_id in wanted:
            ours_now = wanted.pop(entry_id)
            entry = {**entry, **{k: ours_now[k] for k in DEVICE_FIELDS}}
        result.append(entry)
    result.extend(wanted.values())
    return result


def owned_fields(devices: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The entries as the connector sees them (to tell whether a merge changed anything)."""
    return [tuple(d.get(k) for k in ("id", *DEVICE_FIELDS)) for d in devices]
