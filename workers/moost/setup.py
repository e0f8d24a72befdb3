"""``dt-connector setup moost``: every DT device's building exists in MOOST and lists the device.

``plan_buildings`` (pure) works out, from DT's device list, the mapping and MOOST's buildings, which
buildings to create, which cannot be (details missing: reported, with the fix), and which device sets
gain, update or lose (a device whose building label moved) one of our devices. ``MoostSetup.apply``
creates the buildings and writes each changed device set by read, merge, write under the building's
lock, so a device someone else registered, or registered since the plan was read, is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import Redis

from connector.core.keys import MOOST_BUILDING_LOCK_PREFIX
from workers.moost.api import MoostApi
from workers.moost.devices import (
    VENDOR,
    DtDevice,
    building_body,
    building_of,
    merged_devices,
    moost_device,
    owned_fields,
)
from workers.translate.mapping import EventMapping

LOCK_LEASE_S = 30
LOCK_WAIT_S = 15


@dataclass
class BuildingStep:
    """What happens to one MOOST building."""

    building: str
    action: Literal["create", "update", "unchanged", "blocked"]
    devices: list[dict[str, Any]] = field(default_factory=list)
    """Our devices that belong here."""
    body: dict[str, Any] | None = None
    """The building to create."""
    reason: str = ""
    """Why it cannot be created (``blocked``)."""
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.action == "blocked":
            return f"building {self.building!r} is missing and cannot be created: {self.reason}"
        parts = [f"+{len(self.added)} device(s)"] if self.added else []
        parts += [f"~{len(self.updated)} updated"] if self.updated else []
        parts += [f"-{len(self.removed)} moved away"] if self.removed else []
        changes = ", ".join(parts) or "device set up to date"
        if self.action == "create":
            return f"create building {self.building!r} with {len(self.devices)} device(s)"
        return f"building {self.building!r}: {changes}"


@dataclass
class MoostPlan:
    steps: list[BuildingStep] = field(default_factory=list)
    unregistered: list[tuple[str, str]] = field(default_factory=list)
    """(DT device id, why it is not registered)."""

    @property
    def changes(self) -> bool:
        return any(step.action in ("create", "update") for step in self.steps)

    @property
    def blocked(self) -> list[BuildingStep]:
        return [step for step in self.steps if step.action == "blocked"]


def plan_buildings(
    devices: Iterable[DtDevice], mapping: EventMapping, *, buildings: list[dict[str, Any]], customer_id: str
) -> MoostPlan:
    """The plan for ``devices`` against MOOST's current ``buildings`` (with their device sets). Pure."""
    plan = MoostPlan()
    ours: dict[str, list[dict[str, Any]]] = {}
    members: dict[str, list[DtDevice]] = {}
    placed: dict[str, str] = {}
    fleet = list(devices)
    for device in fleet:
        building = building_of(device, mapping)
        if not building:
            plan.unregistered.append((device.id, f"no {mapping.building_label!r} label and no default building"))
            continue
        entry = moost_device(device, mapping)
        if isinstance(entry, str):
            plan.unregistered.append((device.id, entry))
            continue
        ours.setdefault(building, []).append(entry)
        members.setdefault(building, []).append(device)
        placed[device.id] = building
    fleet_ids = {device.id for device in fleet}
    existing = {str(b.get("customerBuildingId")): b for b in buildings}
    for building_id, found in existing.items():
        current = list(found.get("devices") or [])
        moved = [
            str(d.get("id"))
            for d in current
            if d.get("vendor_name") == VENDOR and d.get("id") in fleet_ids and placed.get(str(d["id"])) != building_id
        ]
        wanted = ours.get(building_id, [])
        if not wanted and not moved:
            continue
        merged = merged_devices(current, wanted, remove=moved)
        before = {d.get("id"): d for d in current}
        step = BuildingStep(building_id, "unchanged", wanted, removed=moved)
        for entry in wanted:
            if entry["id"] not in before:
                step.added.append(entry["id"])
            elif owned_fields([before[entry["id"]]]) != owned_fields([entry]):
                step.updated.append(entry["id"])
        if owned_fields(merged) != owned_fields(current):
            step.action = "update"
        plan.steps.append(step)
    for building_id, wanted in ours.items():
        if building_id in existing:
            continue
        body = building_body(building_id, members[building_id], mapping, customer_id=customer_id)
        if isinstance(body, str):
            plan.steps.append(BuildingStep(building_id, "blocked", wanted, reason=body))
            plan.unregistered += [(entry["id"], f"building {building_id!r} is missing") for entry in wanted]
        else:
            plan.steps.append(BuildingStep(building_id, "create", wanted, body, added=[e["id"] for e in wanted]))
    plan.steps.sort(key=lambda step: step.building)
    return plan


class MoostSetup:
    """Reads MOOST, plans, applies."""

    def __init__(self, api: MoostApi, redis: Redis, mapping: EventMapping, *, customer_id: str) -> None:
        self._api = api
        self._redis = redis
        self._mapping = mapping
        self._customer_id = customer_id

    def plan(self, devices: Iterable[DtDevice]) -> MoostPlan:
        return plan_buildings(
            devices, self._mapping, buildings=self._api.buildings(), customer_id=self._customer_id
        )

    def apply(self, plan: MoostPlan) -> None:
        """Create the planned buildings and write the changed device sets.

        Raises:
            ApiError: MOOST refused a call (what was done before it stays done; a rerun continues).
        """
        for step in plan.steps:
            if step.action == "create" and step.body is not None:
                self._api.create_building(step.body)  # 409: made meanwhile; its device set is merged below
            if step.action in ("create", "update"):
                update_device_set(self._api, self._redis, step.building, step.devices, remove=step.removed)


def update_device_set(
    api: MoostApi,
    redis: Redis,
    building: str,
    devices: list[dict[str, Any]],
    *,
    remove: Iterable[str] = (),
    wait_s: float = LOCK_WAIT_S,
) -> bool:
    """Merge ``devices`` into ``building``'s device set (and take ``remove`` out): read, merge and
    write under the building's lock (waiting up to ``wait_s`` for it: ``LockError`` after). True when
    the set changed; False also when the building is gone."""
    lock = f"{MOOST_BUILDING_LOCK_PREFIX}{building}"
    with redis.lock(lock, timeout=LOCK_LEASE_S, blocking_timeout=max(0.01, wait_s)):
        current_building = api.building(building)
        if current_building is None:
            return False
        current = list(current_building.get("devices") or [])
        merged = merged_devices(current, devices, remove=remove)
        if owned_fields(merged) == owned_fields(current):
            return False
        api.replace_devices(building, merged)
        return True
