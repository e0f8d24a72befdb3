"""Spot AI as a destination: one push → Spot's "Ingest Integration Event" (or bulk import), or a device
rename (I/O edge)."""

from __future__ import annotations

from typing import Any

from connector.core.settings import Settings
from workers.deliver.send import EXCERPT_CHARS, Outcome, Sender, idempotency_key
from workers.spot.api import SpotApi
from workers.spot.events import to_spot
from workers.spot.ids import SpotIds
from workers.spot.sync import SpotDeviceSync
from workers.translate.mapping import EventMapping
from workers.translate.pushes import event_type_of, is_backfilled


class SpotDestination:
    """Spot AI "Ingest Integration Event", one request per reading, to the integration and event types
    ``SPOT_INTEGRATION_ID`` and the mapping name, else those ``setup spot`` recorded."""

    name = "spot"

    def __init__(self, settings: Settings, mapping: EventMapping, sender: Sender, ids: SpotIds) -> None:
        self._base = f"{settings.spot_base_url}/v1/integrations"
        self._headers = {"Authorization": f"Bearer {settings.spot_api_key}"}
        self._mapping = mapping
        self._sender = sender
        self._ids = ids
        api = SpotApi(settings.spot_base_url, settings.spot_api_key, session=sender.session)
        self._devices = SpotDeviceSync(api, ids, mapping)
        self._resolved: tuple[dict[str, int], EventMapping] = ({}, mapping)

    def __repr__(self) -> str:
        return f"SpotDestination({self._base})"

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome:
        event_type = event_type_of(push)
        if self._mapping.spot_rule(event_type).sync:
            return self._devices.labels_changed(push, deadline=deadline)
        integration, recorded = self._ids.current()
        mapping = self._mapping_with(recorded)
        rule = mapping.spot_rule(event_type)
        if rule.skip is None and not (integration and rule.event_type_id):
            # Forwarded, but setup has not run (or Redis lost its record): kept for retries, then as a
            # dead letter to replay, so it is delivered once setup has run.
            return Outcome("retry", "spot-type-not-set-up" if integration else "spot-not-set-up")
        bodies = to_spot(push, mapping)
        url = f"{self._base}/{integration}/events"
        posts: list[tuple[str, Any]]
        if (replay or is_backfilled(push)) and bodies and all("integration_device_id" in b for b in bodies):
            # Spot's bulk import takes only devices that exist in Spot (addressed by id):
            # a backlog goes in one request. Other devices are ingested one by one.
            posts = [(f"{url}/import", {"integration_events": bodies})]
        else:
            posts = [(url, body) for body in bodies]
        outcome = Outcome("delivered", "nothing-to-send")
        key = idempotency_key(event_id)
        for target, body in posts:
            outcome = self._sender.post_json(
                target, body, headers=self._headers, idempotency_key=key, now=now, deadline=deadline
            )
            if outcome.status == 401:
                return Outcome("failed", "spot-api-key-rejected", 401, excerpt=outcome.excerpt[:EXCERPT_CHARS])
            if outcome.kind != "delivered":
                return outcome
        return outcome

    def _mapping_with(self, recorded: dict[str, int]) -> EventMapping:
        if recorded is not self._resolved[0]:  # SpotIds hands out the same dict until it rereads
            self._resolved = (recorded, self._mapping.with_spot_ids(recorded))
        return self._resolved[1]
