"""DT ``labelsChanged`` keeps the name of each device's Spot AI device in step (I/O edge).

A change to the ``name`` label or the Spot device label renames the Spot device the device's events
go to (found by ``integration_device_id`` or ``device_external_id``); a device Spot does not have yet
needs nothing (its first event creates it). Other label changes are skipped (counted, not sent).

Every call is cut to the job's deadline, as deliveries are; errors become outcomes by the delivery
rules (``workers.deliver.http.api_outcome``).
"""

from __future__ import annotations

import time
from typing import Any

from workers.deliver.http import ApiError, api_outcome
from workers.deliver.send import Outcome
from workers.spot.api import SpotApi
from workers.spot.events import SPOT_DEVICE_ID
from workers.spot.ids import SpotIds
from workers.translate.mapping import EventMapping
from workers.translate.pushes import Skipped, changed_labels, device_id_of

SPOT_NAME_MAX = 40


class SpotDeviceSync:
    def __init__(self, api: SpotApi, ids: SpotIds, mapping: EventMapping) -> None:
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
