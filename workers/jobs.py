"""RQ entry points. Arguments are JSON types only (RQ's JSON serializer)."""

from __future__ import annotations

import json
import logging
from typing import Any

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
    log.info(
        json.dumps(
            {
                "log": "forward",
                "destination": "log",
                "eventId": event.get("eventId"),
                "eventType": event.get("eventType"),
                "targetName": event.get("targetName"),
                "labels": push.get("labels", {}),
                "data": event.get("data"),
                "receivedAt": received_at,
            },
            separators=(",", ":"),
        )
    )
    return "logged"
