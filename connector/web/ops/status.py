"""The operator's status page, ``GET /status``: is anything stuck or lost?

One server-rendered HTML page (no scripts; it reloads itself every 15 s) showing:
- throughput: events delivered per minute over the last hour, per destination;
- the queue: waiting jobs, age of the oldest, retries scheduled, jobs in progress, jobs
  stranded by a dead worker, RQ's failed jobs, and the job ledger's unaccounted figure (0);
- failures: dead letters grouped by destination and reason, each group with a replay
  button (only when ``METRICS_TOKEN`` is set: the form carries a token derived from it,
  so another site cannot make a logged-in browser replay);
- the last delivered event of each device;
- destination health: delivered, retried, dead-lettered, last success and last failure.

``render_status`` is pure (all data and ``now`` passed in); ``collect_status`` reads Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader
from redis import Redis

from connector.core import deadletters
from connector.core.keys import DEVICES_KEY, MINUTE_PREFIX
from connector.core.redis_conn import reply_text
from connector.web.ops.metrics import Snapshot

MAX_DEVICES_SHOWN = 200


@dataclass
class StatusData:
    snapshot: Snapshot
    per_minute: dict[str, list[int]] = field(default_factory=dict)  # destination → last 60 minutes, oldest first
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (destination, reason) → count


def replay_token(metrics_token: str) -> str:
    """The anti-forgery value replay forms carry, derived from ``METRICS_TOKEN``. Pure."""
    return hmac.new(metrics_token.encode(), b"dt-connector status replay", hashlib.sha256).hexdigest()


def collect_status(redis: Redis, snapshot: Snapshot, *, destinations: Sequence[str], now: float) -> StatusData:
    """Read what the page shows beyond ``snapshot`` (one pipeline, plus the dead-letter scan)."""
    minute = int(now // 60)
    pipe = redis.pipeline(transaction=False)
    for destination in destinations:
        for m in range(minute - 59, minute + 1):
            pipe.get(f"{MINUTE_PREFIX}{destination}:{m}")
    pipe.hgetall(DEVICES_KEY)
    replies = pipe.execute()
    data = StatusData(snapshot=snapshot)
    for n, destination in enumerate(destinations):
        data.per_minute[destination] = [int(v or 0) for v in replies[n * 60 : (n + 1) * 60]]
    for device, raw in replies[-1].items():
        try:
            data.devices[reply_text(device)] = json.loads(raw)
        except ValueError:
            continue
    for letter in deadletters.list_dead(redis, limit=10_000):
        data.failures[(letter.destination, letter.reason)] += 1
    return data


def render_status(data: StatusData, *, destinations: Sequence[str], now: float, replay_form: str | None) -> str:
    """The page (``templates/status.html``, autoescaped). ``replay_form`` is the anti-forgery
    value, or None when replay is off. Pure."""
    snap = data.snapshot
    newest = sorted(data.devices.items(), key=lambda kv: -float(kv[1].get("at", 0)))[:MAX_DEVICES_SHOWN]
    return _TEMPLATES.get_template("status.html").render(
        snap=snap,
        jobs=snap.jobs,
        stuck=bool(snap.queue_depth and snap.oldest_queued_age_s > 300),
        destinations=destinations,
        per_minute=data.per_minute,
        failures=data.failures,
        devices=data.devices,
        newest=newest,
        replay_form=replay_form,
        now=now,
    )


_BARS = " ▁▂▃▄▅▆▇█"


def _sparkline(values: Sequence[int]) -> str:
    top = max(values, default=0) or 1
    return "".join(_BARS[round(v / top * 8)] for v in values)


def _age(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ago(at: float, now: float) -> str:
    return "never" if not at else f"{_age(max(1.0, now - at))} ago"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


_TEMPLATES = Environment(
    loader=PackageLoader("connector.web.ops", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
)
_TEMPLATES.filters.update(age=_age, ago=_ago, utc=_utc, sparkline=_sparkline)
