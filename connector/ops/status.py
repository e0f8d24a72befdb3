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

from markupsafe import escape
from redis import Redis

from connector.keys import DEVICES_KEY, MINUTE_PREFIX
from connector.ops.metrics import Snapshot
from connector.redis_conn import reply_text

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
    from connector import deadletters  # read-only use of the dead-letter registry

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
    """The page. ``replay_form`` is the anti-forgery value, or None when replay is off. Pure."""
    snap = data.snapshot
    parts = [_HEAD]
    parts.append(f"<h1>dt-connector status</h1><p class=muted>{escape(_time(now))} UTC · reloads every 15 s</p>")

    parts.append("<h2>Pushes</h2><table><tr><th>received</th><th>accepted</th><th>duplicates</th>"
                 "<th>rejected</th></tr>")
    parts.append(f"<tr><td id=received>{snap.received}</td><td id=accepted>{snap.pushes.get('accepted', 0)}</td>"
                 f"<td>{snap.pushes.get('duplicate', 0)}</td><td>{sum(snap.rejected.values())}</td></tr></table>")
    if snap.rejected:
        parts.append("<table><tr><th>status</th><th>reason</th><th>rejected</th></tr>")
        for (status, reason), count in sorted(snap.rejected.items(), key=lambda kv: -kv[1]):
            parts.append(f"<tr><td>{escape(status)}</td><td>{escape(reason)}</td><td>{count}</td></tr>")
        parts.append("</table>")

    stuck = snap.queue_depth and snap.oldest_queued_age_s > 300
    jobs = snap.jobs
    parts.append("<h2>Queue</h2><table><tr><th>waiting</th><th>oldest waiting</th><th>retries scheduled</th>"
                 "<th>in progress</th><th>stranded</th><th>failed (RQ)</th><th>unaccounted</th></tr>")
    parts.append(f"<tr><td id=queue-depth>{snap.queue_depth}</td>"
                 f"<td id=queue-age class={'bad' if stuck else 'ok'}>"
                 f"{_age(snap.oldest_queued_age_s) if snap.queue_depth else 'none'}</td>"
                 f"<td>{snap.scheduled}</td><td>{snap.started}</td>"
                 f"<td id=stranded class={'bad' if jobs.intermediate else 'ok'}>{jobs.intermediate}</td>"
                 f"<td id=failed class={'bad' if snap.failed else 'ok'}>{snap.failed}</td>"
                 f"<td id=unaccounted class={'bad' if jobs.unaccounted else 'ok'}>{jobs.unaccounted}</td></tr></table>")
    parts.append(f"<p class=muted>{jobs.created} jobs created: {jobs.delivered} delivered, {jobs.skipped} skipped, "
                 f"{jobs.dead_lettered} dead-lettered, {jobs.pending} pending. Stranded jobs (their worker died "
                 "between dequeue and start) and RQ's failed jobs are retried or kept as dead letters by the "
                 "workers' maintenance within a minute; unaccounted must stay 0.</p>")

    parts.append("<h2>Destinations</h2><table><tr><th>destination</th><th>delivered</th><th>retried</th>"
                 "<th>dead letters</th><th>last success</th><th>last failure</th><th>last 60 min</th></tr>")
    for d in destinations:
        counts = snap.deliveries.get(d, {})
        health = snap.health.get(d, {})
        last_ok, last_error = health.get("last_ok", 0.0), health.get("last_error", 0.0)
        state = "bad" if last_error > last_ok else "ok"
        parts.append(
            f"<tr class=dest id=dest-{escape(d)}><td class={state}>{escape(d)}</td>"
            f"<td>{counts.get('delivered', 0)}</td><td>{counts.get('retried', 0)}</td>"
            f"<td>{counts.get('dead_lettered', 0)}</td><td>{_ago(last_ok, now)}</td><td>{_ago(last_error, now)}</td>"
            f"<td>{_sparkline(data.per_minute.get(d, []))} {sum(data.per_minute.get(d, [])[-5:]) / 5:.1f}/min</td></tr>"
        )
    parts.append("</table>")

    parts.append(f"<h2>Failures</h2><p>{snap.dead_letters} dead letter(s) kept for replay.</p>")
    if data.failures:
        parts.append("<table><tr><th>destination</th><th>reason</th><th>events</th><th></th></tr>")
        for (d, reason), count in data.failures.most_common():
            button = ""
            if replay_form is not None:
                button = (
                    "<form method=post action=status/replay>"
                    f"<input type=hidden name=destination value='{escape(d)}'>"
                    f"<input type=hidden name=reason value='{escape(reason)}'>"
                    f"<input type=hidden name=form value='{escape(replay_form)}'>"
                    "<button type=submit>Replay</button></form>"
                )
            parts.append(f"<tr class=failure><td>{escape(d)}</td><td>{escape(reason)}</td><td>{count}</td>"
                         f"<td>{button}</td></tr>")
        parts.append("</table>")
        if replay_form is None:
            parts.append("<p class=muted>Set METRICS_TOKEN to replay from here; or run "
                         "<code>dt-connector failed replay</code>.</p>")

    parts.append(f"<h2>Devices</h2><p class=muted>{len(data.devices)} device(s); last delivered event of each.</p>")
    parts.append("<table><tr><th>device</th><th>name</th><th>event</th><th>at</th></tr>")
    newest = sorted(data.devices.items(), key=lambda kv: -float(kv[1].get("at", 0)))[:MAX_DEVICES_SHOWN]
    for device, last in newest:
        parts.append(f"<tr class=device><td>{escape(device)}</td><td>{escape(str(last.get('name', '')))}</td>"
                     f"<td>{escape(str(last.get('eventType', '')))}</td>"
                     f"<td>{_ago(float(last.get('at', 0)), now)}</td></tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


_HEAD = """<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=15>
<meta name=viewport content="width=device-width, initial-scale=1"><title>dt-connector status</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
th{font-weight:600;color:#555}.ok{color:#18794e}.bad{color:#c62828;font-weight:600}.muted{color:#777}
.spark{font-family:monospace;letter-spacing:-1px;color:#1565c0}h2{margin-top:1.5em}
</style></head><body>"""

_BARS = " ▁▂▃▄▅▆▇█"


def _sparkline(values: Sequence[int]) -> str:
    if not values:
        return ""
    top = max(values) or 1
    return "<span class=spark>" + "".join(_BARS[round(v / top * 8)] for v in values) + "</span>"


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


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")

