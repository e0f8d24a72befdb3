"""Structured logging: one JSON object per line on stdout, as Heroku's log router expects.

``push_line`` renders the single per-request line of ``POST /dt/events``. It is built
by hand from the few fields it has (all short strings or numbers) because it runs on
every push; nothing in it comes from headers, so it can never carry a secret or token.
"""

from __future__ import annotations

import json
import logging
import sys

ACCESS_LOGGER = "connector.push"

_dumps = json.dumps


def push_line(
    *,
    status: int,
    outcome: str,
    ms: float,
    event_id: str | None = None,
    event_type: str | None = None,
    device: str | None = None,
    reason: str | None = None,
) -> str:
    """The JSON log line for one push."""
    line = f'{{"log":"push","status":{status},"outcome":"{outcome}","ms":{ms:.2f}'
    if event_id is not None:
        line += f',"eventId":{_dumps(event_id)},"eventType":{_dumps(event_type)},"device":{_dumps(device)}'
    if reason is not None:
        line += f',"reason":"{reason}"'
    return line + "}"


class JsonFormatter(logging.Formatter):
    """Messages that already are JSON pass through; anything else is wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message
        doc = {"log": record.name, "level": record.levelname.lower(), "msg": message}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _dumps(doc)


def configure(level: str = "INFO") -> None:
    """Send the ``connector`` and ``workers`` loggers to stdout as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    for name in ("connector", "workers"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
