"""DT ``labelsChanged`` keeps each device's MOOST registration in step (I/O edge).

A change to the ``name`` label or the building label re-registers the device as ``setup moost``
would: its entry in its building's device set is added or renamed (read, merge, write under the
building's lock), and it leaves any other building listing it. A new building is created when its
details are known (mapping table or labels); otherwise the event fails with the reason, to be
replayed once the building exists. Other label changes are skipped (counted, not sent).

Every call is cut to the job's deadline, as deliveries are. Errors become outcomes like
deliveries' (``workers.deliver.http.api_outcome``): no answer, the deadline, 429 and 5xx are
retried; other refusals fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis import Redis

from workers.deliver.http import ApiError, api_outcome
from workers.deliver.send import Outcome
from workers.moost.api import MoostApi
from workers.moost.devices import VENDOR, DtDevice, building_body, building_of, moost_device
from workers.moost.setup import LOCK_WAIT_S, update_device_set
from workers.translate.mapping import EventMapping
from workers.translate.pushes import Skipped, changed_labels, device_id_of


def device_after(push: dict[str, Any], labels: dict[str, str]) -> DtDevice:
    metadata = push.get("metadata") if isinstance(push.get("metadata"), dict) else {}
    return DtDevice(
        id=device_id_of(push),
        type=str((metadata or {}).get("deviceType") or ""),
        product_number=str((metadata or {}).get("productNumber") or ""),
        labels=labels,
    )


class MoostDeviceSync:
    def __init__(self, api: MoostApi, redis: Redis, mapping: EventMapping, *, customer_id: str) -> None:
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
