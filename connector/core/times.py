"""Times as DT, RQ, the downstream APIs and the command line write them. Pure.

Parsing is the standard library's ``datetime.fromisoformat`` (Python 3.11 reads ``Z`` and any
number of fraction digits); this module adds what RFC 3339 asks beyond it: a zone is required,
``t``/``z`` may be lower case, and a leap second (``:60``) is read as the second before it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}")
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time (``2024-05-29T10:34:03.970415Z``, any offset) as an aware UTC datetime.

    Raises:
        ValueError: not an RFC 3339 time (a date alone, no zone, ISO week dates, ...).
    """
    if not isinstance(text, str) or not _SHAPE.match(text):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    normal = text.upper()
    if normal[17:19] == "60":  # a leap second
        normal = normal[:17] + "59" + normal[19:]
    value = datetime.fromisoformat(normal)
    if value.tzinfo is None:
        raise ValueError(f"time needs a zone (Z or an offset): {text!r}")
    return value.astimezone(UTC)


def format_rfc3339(at: datetime | float, *, digits: int = 0) -> str:
    """``at`` (aware datetime, or Unix seconds) in UTC with ``Z`` and ``digits`` (0, 3 or 6)
    fraction digits, truncated: a time never rounds into the next second."""
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[: 20 + digits] if digits else text[:19]) + "Z"


def parse_duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d`` (or a sum such as ``1d12h``) as a timedelta.

    Raises:
        ValueError: not such a duration.
    """
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration like 24h, 90m or 7d: {text!r}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def parse_since(text: str, *, now: float) -> float:
    """A point in time from the command line: a duration ago (``24h``) or an RFC 3339 time; Unix seconds.

    Raises:
        ValueError: neither form (a time without a zone included).
    """
    try:
        return now - parse_duration(text).total_seconds()
    except ValueError:
        pass  # not a duration: a time
    return parse_rfc3339(text.strip()).timestamp()
