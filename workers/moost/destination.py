"""MOOST as a destination: one push → MOOST's live or historical "Add Events", or a device sync (I/O edge)."""

from __future__ import annotations

from typing import Any

from connector.core.settings import Settings
from workers.deliver.send import Outcome, Sender, idempotency_key
from workers.moost.api import MoostTokens
from workers.moost.events import to_moost
from workers.moost.sync import MoostDeviceSync
from workers.translate.mapping import EventMapping
from workers.translate.pushes import event_type_of, is_old


class MoostDestination:
    """MOOST "Add Events": live pushes, and replays or backfills of recent events, one per request to the
    live endpoint (run through MOOST's rule engine); DT's backfilled samples, and replays or backfills
    of events older than ``MOOST_LIVE_MAX_AGE_S``, as one batch to the historical endpoint (stored, no
    rules run)."""

    name = "moost"

    def __init__(
        self, settings: Settings, mapping: EventMapping, sender: Sender, tokens: MoostTokens, devices: MoostDeviceSync
    ) -> None:
        self._settings = settings
        self._mapping = mapping
        self._sender = sender
        self._tokens = tokens
        self._devices = devices

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome:
        if self._mapping.moost_rule(event_type_of(push)).sync:
            return self._devices.labels_changed(push, deadline=deadline)
        batch = to_moost(push, self._mapping, customer_id=self._settings.moost_customer_id)
        base = self._settings.moost_base_url
        old = replay and is_old(push, now=now, max_age_s=self._settings.moost_live_max_age_s)
        if batch.historical or old:
            posts: list[tuple[str, Any]] = [(f"{base}/events/historical/v1", batch.events)]
        else:
            posts = [(f"{base}/events/v1", event) for event in batch.events]
        outcome = Outcome("delivered", "nothing-to-send")
        key = idempotency_key(event_id)
        for url, body in posts:
            outcome = self._post(url, body, key=key, now=now, deadline=deadline)
            if outcome.kind != "delivered":
                return outcome
        return outcome

    def _post(self, url: str, body: Any, *, key: str, now: float, deadline: float | None) -> Outcome:
        token = self._tokens.get(deadline=deadline)
        if isinstance(token, Outcome):
            return token
        outcome = self._send(url, body, token, key, now, deadline)
        if outcome.status == 401:  # expired or revoked: renew once, then trust the answer
            token = self._tokens.get(renew=True, deadline=deadline)
            if isinstance(token, Outcome):
                return token
            outcome = self._send(url, body, token, key, now, deadline)
        return outcome

    def _send(self, url: str, body: Any, token: str, key: str, now: float, deadline: float | None) -> Outcome:
        headers = {"Authorization": f"Bearer {token}"}
        return self._sender.post_json(url, body, headers=headers, idempotency_key=key, now=now, deadline=deadline)
