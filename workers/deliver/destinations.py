"""Destinations: translate a push and deliver it to MOOST, Spot AI or the log (I/O edge).

Each destination's ``deliver(push, event_id=…, now=…, deadline=…)`` returns an ``Outcome``
or raises ``Skipped`` / ``InvalidEvent`` from the translators. ``deadline``
(``time.monotonic()``) is when the job must be done: requests are cut to fit it
(``workers.deliver.send.timeouts_within``). Credentials never appear in an
outcome, a log line or an exception message: network errors are reduced to reason slugs
because ``requests`` puts the URL — with MOOST's secret in its query — into its messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any, Protocol

import requests
from redis import Redis
from redis.exceptions import RedisError

from connector.keys import MOOST_TOKEN_KEY
from connector.redis_conn import reply_text
from connector.settings import Settings
from workers.deliver.send import EXCERPT_CHARS, Outcome, Sender, idempotency_key, timeouts_within
from workers.deliver.sync import MoostDeviceSync, SpotDeviceSync
from workers.provision.http import ApiError
from workers.provision.moost_api import MoostApi
from workers.provision.spot_api import SpotApi
from workers.provision.spot_ids import SpotIds
from workers.translate.mapping import Mapping
from workers.translate.payloads import is_backfilled, is_old, to_moost, to_spot
from workers.translate.readings import UnreadableEvent, readings_of

log = logging.getLogger("workers.forward")

TOKEN_EARLY_RENEWAL_S = 300
"""Renew the shared MOOST token this long before it expires."""

TOKEN_LOCAL_CACHE_S = 60.0
"""How long a worker process reuses the token without asking Redis (saves a round trip per job)."""


class Destination(Protocol):
    name: str

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome: ...


class LogDestination:
    """Prints each event's readings: the default, so the pipeline is visible out of the box."""

    name = "log"

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome:
        event = push.get("event", {})
        line: dict[str, Any] = {
            "log": "forward",
            "destination": "log",
            "eventId": event.get("eventId"),
            "eventType": event.get("eventType"),
            "targetName": event.get("targetName"),
            "labels": push.get("labels", {}),
        }
        try:
            line["readings"] = [{"at": r.at, **r.values} for r in readings_of(event)]
        except UnreadableEvent as exc:
            line["unreadable"] = str(exc)
            line["data"] = event.get("data")
        log.info(json.dumps(line, separators=(",", ":")))
        return Outcome("delivered", "logged")


class MoostTokens:
    """MOOST's bearer token, shared by every worker process through Redis."""

    def __init__(self, redis: Redis, settings: Settings, session: requests.Session, timeout_s: tuple[float, float]):
        self._redis = redis
        self._url = f"{settings.moost_base_url}/auth/token/v1"
        self._params = {"clientId": settings.moost_client_id, "clientSecret": settings.moost_client_secret}
        self._session = session
        self._timeout_s = timeout_s
        self._local: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return "MoostTokens(<hidden>)"

    def require(self, *, renew: bool = False) -> str:
        """A valid token for management calls (``renew``: a new one, not the shared one).

        Raises:
            ApiError: none could be had (the reason, never a credential; status 401 when MOOST refused
                the client credentials).
        """
        token = self.get(renew=renew)
        if isinstance(token, Outcome):
            status = f" (HTTP {token.status})" if token.status else ""
            raise ApiError(f"MOOST token: {token.reason}{status}", token.status)
        return token

    def renewed(self) -> str:
        """``require(renew=True)``: what management calls use after a 401."""
        return self.require(renew=True)

    def get(self, *, renew: bool = False, deadline: float | None = None) -> str | Outcome:
        """A valid token, or the ``Outcome`` explaining why none could be had."""
        if not renew:
            if self._local is not None and time.monotonic() < self._local[1]:
                return self._local[0]
            try:
                cached = self._redis.get(MOOST_TOKEN_KEY)
            except RedisError:
                cached = None
            if cached:
                token = reply_text(cached)
                self._local = (token, time.monotonic() + TOKEN_LOCAL_CACHE_S)
                return token
        self._local = None
        timeout = timeouts_within(self._timeout_s, deadline, now=time.monotonic())
        if timeout is None:
            return Outcome("retry", "deadline")
        try:
            response = self._session.get(self._url, params=self._params, timeout=timeout)
        except requests.Timeout:
            return Outcome("retry", "moost-token-timeout")
        except requests.RequestException:
            return Outcome("retry", "moost-token-connection-error")
        if response.status_code == 401:
            return Outcome("failed", "moost-credentials-rejected", 401)
        if response.status_code != 200:
            return Outcome("retry", f"moost-token-http-{response.status_code}", response.status_code)
        try:
            doc = response.json()
            token = doc["access_token"]
            lifetime = int(doc.get("expires_in") or 86400)
        except (ValueError, KeyError, TypeError):
            return Outcome("retry", "moost-token-unreadable", 200)
        with contextlib.suppress(RedisError):  # still usable by this process
            self._redis.set(MOOST_TOKEN_KEY, token, ex=max(60, lifetime - TOKEN_EARLY_RENEWAL_S))
        self._local = (
            str(token),
            time.monotonic() + min(TOKEN_LOCAL_CACHE_S, max(1, lifetime - TOKEN_EARLY_RENEWAL_S)),
        )
        return str(token)


class MoostDestination:
    """MOOST "Add Events": live pushes, and replays or backfills of recent events, one per request to the
    live endpoint (run through MOOST's rule engine); DT's backfilled samples, and replays or backfills
    of events older than ``MOOST_LIVE_MAX_AGE_S``, as one batch to the historical endpoint (stored, no
    rules run)."""

    name = "moost"

    def __init__(
        self, settings: Settings, mapping: Mapping, sender: Sender, tokens: MoostTokens, devices: MoostDeviceSync
    ) -> None:
        self._settings = settings
        self._mapping = mapping
        self._sender = sender
        self._tokens = tokens
        self._devices = devices

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome:
        if self._mapping.moost_rule(_event_type(push)).sync:
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


class SpotDestination:
    """Spot AI "Ingest Integration Event", one request per reading, to the integration and event types
    ``SPOT_INTEGRATION_ID`` and the mapping name, else those ``setup spot`` recorded."""

    name = "spot"

    def __init__(self, settings: Settings, mapping: Mapping, sender: Sender, ids: SpotIds) -> None:
        self._base = f"{settings.spot_base_url}/v1/integrations"
        self._headers = {"Authorization": f"Bearer {settings.spot_api_key}"}
        self._mapping = mapping
        self._sender = sender
        self._ids = ids
        api = SpotApi(settings.spot_base_url, settings.spot_api_key, session=sender.session)
        self._devices = SpotDeviceSync(api, ids, mapping)
        self._resolved: tuple[dict[str, int], Mapping] = ({}, mapping)

    def __repr__(self) -> str:
        return f"SpotDestination({self._base})"

    def deliver(
        self, push: dict[str, Any], *, event_id: str, now: float, replay: bool = False, deadline: float | None = None
    ) -> Outcome:
        event_type = _event_type(push)
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

    def _mapping_with(self, recorded: dict[str, int]) -> Mapping:
        if recorded is not self._resolved[0]:  # SpotIds hands out the same dict until it rereads
            self._resolved = (recorded, self._mapping.with_spot_ids(recorded))
        return self._resolved[1]


def _event_type(push: dict[str, Any]) -> str:
    event = push.get("event")
    return str(event.get("eventType")) if isinstance(event, dict) else ""


def build_destinations(
    settings: Settings, mapping: Mapping, redis: Redis, *, concurrency: int = 1
) -> dict[str, Destination]:
    """The configured destinations, sharing one keep-alive sender among ``concurrency`` job threads."""
    # Connect quickly or not at all; the read timeout keeps a job well inside its own timeout.
    sender = Sender(
        timeout_s=(min(3.05, settings.forward_timeout_s), settings.forward_timeout_s), pool_size=max(10, concurrency)
    )
    built: dict[str, Destination] = {}
    for name in settings.destinations:
        if name == "log":
            built[name] = LogDestination()
        elif name == "moost":
            tokens = MoostTokens(redis, settings, sender.session, sender.timeout_s)
            api = MoostApi(settings.moost_base_url, tokens.require, renew=tokens.renewed, session=sender.session)
            devices = MoostDeviceSync(api, redis, mapping, customer_id=settings.moost_customer_id)
            built[name] = MoostDestination(settings, mapping, sender, tokens, devices)
        elif name == "spot":
            built[name] = SpotDestination(settings, mapping, sender, SpotIds(redis, settings.spot_integration_id))
    return built
