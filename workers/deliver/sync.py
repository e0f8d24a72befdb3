"""DT ``labelsChanged`` events keep each device's registration downstream in step (I/O edge).

* MOOST: a change to the ``name`` label or the building label re-registers the device as
  ``setup moost`` would: its entry in its building's device set is added or renamed (read, merge,
  write under the building's lock), and it leaves any other building listing it. A new building is
  created when its details are known (mapping table or labels); otherwise the event fails with the
  reason, to be replayed once the building exists.
* Spot AI: a change to the ``name`` label or the Spot device label renames the Spot device the
  device's events go to (found by ``integration_device_id`` or ``device_external_id``); a device Spot
  does not have yet needs nothing (its first event creates it).

Other label changes are skipped (counted, not sent). Every call is cut to the job's deadline, as
deliveries are. Errors become outcomes like deliveries': no answer, the deadline, 429 and 5xx are
retried; other refusals fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis import Redis

from workers.deliver.send import Outcome, classify
from workers.provision.http import ApiError
from workers.provision.moost_api import MoostApi
from workers.provision.moost_devices import VENDOR, DtDevice, building_body, building_of, moost_device
from workers.provision.moost_setup import LOCK_WAIT_S, update_device_set
from workers.provision.spot_api import SpotApi
from workers.provision.spot_ids import SpotIds
from workers.translate.mapping import Mapping
from workers.translate.payloads import SPOT_DEVICE_ID, Skipped, device_id_of

SPOT_NAME_MAX = 40


def changed_labels(push: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The device's labels after a labelsChanged push (the push's labels updated by the event's
    ``added``/``modified``/``removed``) and the keys that changed. Pure."""
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


def device_after(push: dict[str, Any], labels: dict[str, str]) -> DtDevice:
    metadata = push.get("metadata") if isinstance(push.get("metadata"), dict) else {}
    return DtDevice(
        id=device_id_of(push),
        type=str((metadata or {}).get("deviceType") or ""),
        product_number=str((metadata or {}).get("productNumber") or ""),
        labels=labels,
    )


def api_outcome(exc: ApiError, destination: str, *, now: float) -> Outcome:
    """A failed management call as a delivery outcome, by the rules deliveries follow (``classify``). Pure."""
    if exc.status is None:
        return Outcome("retry", f"{destination}-unreachable")
    return classify(exc.status, {}, str(exc), now=now)


class MoostDeviceSync:
    def __init__(self, api: MoostApi, redis: Redis, mapping: Mapping, *, customer_id: str) -> None:
        self._api = api
        self._redis = redis
        self._mapping = mapping
        self._customer_id = customer_id

    def labels_changed(self, push: dict[str, Any], *, deadline: float | None = None) -> Outcome:
        labels, changed = changed_labels(push)
        relevant = {"name", self._mapping.building_label}
        if not changed & relevant:
            raise Skipped("labels-not-used", f"changed labels {sorted(changed)} are not {sorted(relevant)}")
        device = device_after(push, labels)
        target = building_of(device, self._mapping)
        entry = moost_device(device, self._mapping) if target else None
        api = self._api.within(deadline)

        def write(building_id: str, devices: list[dict[str, Any]], remove: Iterable[str] = ()) -> None:
            wait = LOCK_WAIT_S if deadline is None else deadline - time.monotonic()
            update_device_set(api, self._redis, building_id, devices, remove=remove, wait_s=wait)

        try:
            for building in api.buildings():
                building_id = str(building.get("customerBuildingId"))
                listed = any(
                    d.get("id") == device.id and d.get("vendor_name") == VENDOR for d in building.get("devices") or []
                )
                if listed and (building_id != target or isinstance(entry, str)):
                    write(building_id, [], remove=[device.id])
            if not target or isinstance(entry, str) or entry is None:
                reason = entry if isinstance(entry, str) else "it has no building now"
                return Outcome("delivered", "unregistered", excerpt=f"device not registered in MOOST: {reason}")
            if api.building(target) is None:
                body = building_body(target, [device], self._mapping, customer_id=self._customer_id)
                if isinstance(body, str):
                    return Outcome("failed", "moost-building-missing", excerpt=f"building {target!r}: {body}")
                api.create_building(body)
            write(target, [entry])
        except ApiError as exc:
            return api_outcome(exc, "moost", now=time.time())
        return Outcome("delivered", "device-synced")


class SpotDeviceSync:
    def __init__(self, api: SpotApi, ids: SpotIds, mapping: Mapping) -> None:
        self._api = api
        self._ids = ids
        self._mapping = mapping

    def labels_changed(self, push: dict[str, Any], *, deadline: float | None = None) -> Outcome:
        labels, changed = changed_labels(push)
        relevant = {"name"} | ({self._mapping.spot_device_label} - {""})
        if not changed & relevant:
            raise Skipped("labels-not-used", f"changed labels {sorted(changed)} are not {sorted(relevant)}")
        integration, _ = self._ids.current()
        if not integration:
            return Outcome("retry", "spot-not-set-up")
        device_id = device_id_of(push)
        name = ((labels.get("name") or "").strip() or device_id)[:SPOT_NAME_MAX]
        api = self._api.within(deadline)
        try:
            spot_device = self._spot_device(api, integration, device_id, labels)
            if spot_device is None:
                raise Skipped("no-spot-device", "Spot has no device for it yet (its first event creates one)")
            if spot_device.get("name") != name:
                api.rename_device(integration, int(spot_device["id"]), name)
        except ApiError as exc:
            return api_outcome(exc, "spot", now=time.time())
        return Outcome("delivered", "device-synced")

    def _spot_device(
        self, api: SpotApi, integration: int, device_id: str, labels: dict[str, str]
    ) -> dict[str, Any] | None:
        label = self._mapping.spot_device_label
        by_id = labels.get(label, "") if label else ""
        external = self._mapping.spot_device_prefix + device_id
        for spot_device in api.devices(integration):
            if (by_id and SPOT_DEVICE_ID.fullmatch(by_id) and spot_device.get("id") == int(by_id)) or (
                not by_id and spot_device.get("external_id") == external
            ):
                return spot_device
        return None
