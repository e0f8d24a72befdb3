"""The destinations a worker delivers to: ``log``, ``moost`` (``workers.moost``), ``spot`` (``workers.spot``).

Each destination's ``deliver(push, event_id=…, now=…, deadline=…)`` returns an ``Outcome``
or raises ``Skipped`` / ``InvalidEvent`` from the translators. ``deadline``
(``time.monotonic()``) is when the job must be done: requests are cut to fit it
(``workers.deliver.send.timeouts_within``). Credentials never appear in an
outcome, a log line or an exception message: network errors are reduced to reason slugs
because ``requests`` puts the URL — with MOOST's secret in its query — into its messages.

A new destination is a folder like ``workers/moost/`` (translator, API client, ``Destination``),
its rules in the mapping, and one line in ``build_destinations``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from redis import Redis

from connector.core.settings import Settings
from workers.deliver.send import Outcome, Sender
from workers.moost.api import MoostApi, MoostTokens
from workers.moost.destination import MoostDestination
from workers.moost.sync import MoostDeviceSync
from workers.spot.destination import SpotDestination
from workers.spot.ids import SpotIds
from workers.translate.mapping import EventMapping
from workers.translate.readings import UnreadableEvent, readings_of

log = logging.getLogger("workers.forward")


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


def build_destinations(
    settings: Settings, mapping: EventMapping, redis: Redis, *, concurrency: int = 1
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
