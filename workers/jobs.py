"""RQ entry points. Arguments are JSON types only (RQ's JSON serializer)."""

from __future__ import annotations

import json
import logging
from typing import Any

from workers.readings import UnreadableEvent, readings_of

log = logging.getLogger("workers.forward")


class UnknownDestination(Exception):
    """The job names a destination this worker cannot deliver to (permanent failure)."""


def forward(destination: str, push: dict[str, Any], received_at: float) -> str:
    """Deliver one DT push (``{"event", "labels", "metadata"}``) to ``destination``.

    Returns:
        A short outcome string (kept only while RQ keeps results).

    Raises:
        UnknownDestination: ``destination`` is not one this worker knows.
    """
    if destination == "log":
        return _to_log(push, received_at)
    raise UnknownDestination(f"no destination named {destination!r}")


def _to_log(push: dict[str, Any], received_at: float) -> str:
    event = push.get("event", {})
    line: dict[str, Any] = {
        "log": "forward",
        "destination": "log",
        "eventId": event.get("eventId"),
        "eventType": event.get("eventType"),
        "targetName": event.get("targetName"),
        "labels": push.get("labels", {}),
        "receivedAt": received_at,
    }
    try:
        line["readings"] = [{"at": r.at, **r.values} for r in readings_of(event)]
    except UnreadableEvent as exc:
        line["unreadable"] = str(exc)
        line["data"] = event.get("data")
    log.info(json.dumps(line, separators=(",", ":")))
    return "logged"
