"""``dt-connector backfill``: fill gaps from DT's event history (31 days), resumably.

DT drops queued events older than 12 hours and a disabled connector replays nothing, so
after an outage the events are only in DT's history. This walks every device of the
project (or one), pages through its history for the window (newest first), wraps each
event like a push (labels and metadata from the device list, ``wrap_history_event``)
and queues it through the same dedupe+enqueue step as live pushes, marked ``replay`` (MOOST
stores events older than ``MOOST_LIVE_MAX_AGE_S`` as history; Spot AI bulk-imports known devices'),
with the labels a live push would carry. Events already received live are
recognised by ``eventId`` (within ``DEDUPE_TTL_S``) and not sent again.

Progress is checkpointed in Redis after every page (``dt:backfill:<run>``: the window,
finished devices, and the next page token of the device in progress), so the same
command started again continues where it stopped, over the same window. A page fetched twice is
harmless: its events are duplicates by then.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from redis import Redis

from connector.core.enqueue import Enqueuer
from connector.core.keys import BACKFILL_PREFIX
from connector.core.redis_conn import reply_text
from connector.core.times import format_rfc3339, parse_duration, parse_rfc3339
from connector.dt.api import DtApi

CHECKPOINT_PREFIX = BACKFILL_PREFIX
CHECKPOINT_TTL_S = 7 * 24 * 3600
HISTORY_RETENTION = timedelta(days=31)

def window(*, since: str | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The backfill window from the command's options, clipped to DT's retention. Pure."""
    if since and (start or end):
        raise ValueError("give either --since or --from/--to")
    if since:
        begin, finish = now - parse_duration(since), now
    elif start:
        begin, finish = parse_rfc3339(start), parse_rfc3339(end) if end else now
    else:
        raise ValueError("give --since (e.g. 24h) or --from")
    begin = max(begin, now - HISTORY_RETENTION)
    if begin >= finish:
        raise ValueError("the window is empty (or entirely older than DT's 31-day history)")
    return begin, finish


def wrap_history_event(
    event: dict[str, Any], device: dict[str, Any], *, label_keys: Collection[str] | None = None
) -> bytes:
    """A history event as DT would have pushed it: ``{event, labels, metadata}``, compact. Pure.

    ``device`` is an entry of DT's device list (``name``, ``type``, ``productNumber``,
    ``labels``). A live push carries only the labels the Data Connector names, so with
    ``label_keys`` the device's other labels are left out (None: all of them).
    """
    project_id, device_id = split_device_name(str(device.get("name", "")))
    labels = dict(device.get("labels") or {})
    if label_keys is not None:
        labels = {key: value for key, value in labels.items() if key in label_keys}
    doc = {
        "event": event,
        "labels": labels,
        "metadata": {
            "deviceId": device_id,
            "projectId": project_id,
            "deviceType": str(device.get("type", "")),
            "productNumber": str(device.get("productNumber", "")),
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def split_device_name(name: str) -> tuple[str, str]:
    """``projects/<p>/devices/<d>`` → ``(p, d)``; a bare id → ``("", id)``. Pure."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "devices":
        return parts[1], parts[3]
    return "", parts[-1]



@dataclass
class BackfillReport:
    devices: int = 0
    pages: int = 0
    events: int = 0
    queued: int = 0
    duplicates: int = 0
    skipped: int = 0
    resumed: bool = False


class Backfill:
    """One backfill run over ``[begin, end)``, optionally for one device."""

    def __init__(
        self,
        api: DtApi,
        enqueuer: Enqueuer,
        redis: Redis,
        *,
        begin: datetime,
        end: datetime,
        device_id: str | None = None,
        spec: str = "",
        label_keys: Collection[str] | None = None,
        clock: Callable[[], float],
        out: IO[str] | None = sys.stderr,
    ) -> None:
        self._api = api
        self._enqueuer = enqueuer
        self._redis = redis
        self._start, self._end = format_rfc3339(begin), format_rfc3339(end)
        self._device_id = device_id
        self._label_keys = label_keys
        self._clock = clock
        self._out = out
        # The run is named by what the user typed (``--since 24h``), not by the clock, so the
        # same command started again resumes, with the window of the first attempt.
        run = f"{api.settings.project_id}|{spec or self._start + '|' + self._end}|{device_id or '*'}"
        self.checkpoint_key = CHECKPOINT_PREFIX + hashlib.sha256(run.encode()).hexdigest()[:16]

    def run(self) -> BackfillReport:
        """Queue every event of the window not yet queued; checkpoint after each page."""
        report = BackfillReport()
        state = {reply_text(k): reply_text(v) for k, v in self._redis.hgetall(self.checkpoint_key).items()}
        report.resumed = any(k.startswith(("done:", "page:")) for k in state)
        if state.get("start") and state.get("end"):
            self._start, self._end = state["start"], state["end"]
            if self._out is not None:
                print(f"backfill: resuming the interrupted run over {self._start} to {self._end}", file=self._out)
        else:
            self._checkpoint({"start": self._start, "end": self._end})
        devices = [d for d in self._api.devices() if self._wanted(d)]
        for number, device in enumerate(devices, start=1):
            device_id = split_device_name(str(device.get("name", "")))[1]
            report.devices += 1
            if state.get(f"done:{device_id}"):
                continue
            token = state.get(f"page:{device_id}", "")
            while True:
                events, next_token = self._api.event_page(device_id, start=self._start, end=self._end, page_token=token)
                report.pages += 1
                for event in events:
                    self._queue(event, device, report)
                token = next_token
                if token:
                    self._checkpoint({f"page:{device_id}": token})
                else:
                    self._checkpoint({f"done:{device_id}": "1"}, drop=f"page:{device_id}")
                self._progress(number, len(devices), device_id, report)
                if not token:
                    break
        self._redis.delete(self.checkpoint_key)
        return report

    def _checkpoint(self, fields: dict[str, str], *, drop: str | None = None) -> None:
        """Record progress atomically, and keep the checkpoint for ``CHECKPOINT_TTL_S`` from now."""
        with self._redis.pipeline(transaction=True) as pipe:
            for name, value in fields.items():
                pipe.hset(self.checkpoint_key, name, value)
            if drop:
                pipe.hdel(self.checkpoint_key, drop)
            pipe.expire(self.checkpoint_key, CHECKPOINT_TTL_S)
            pipe.execute()

    def _wanted(self, device: dict[str, Any]) -> bool:
        return self._device_id is None or split_device_name(str(device.get("name", "")))[1] == self._device_id

    def _queue(self, event: dict[str, Any], device: dict[str, Any], report: BackfillReport) -> None:
        report.events += 1
        event_id = event.get("eventId")
        if not isinstance(event_id, str) or not event_id or not isinstance(event.get("eventType"), str):
            report.skipped += 1
            return
        body = wrap_history_event(event, device, label_keys=self._label_keys)
        if self._enqueuer.enqueue(event_id, body, received_at=self._clock(), replay=True):
            report.queued += 1
        else:
            report.duplicates += 1

    def _progress(self, number: int, total: int, device_id: str, report: BackfillReport) -> None:
        if self._out is None:
            return
        width = 24
        filled = round(width * (number - 1) / max(total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"backfill [{bar}] device {number}/{total} {device_id}: {report.events} events, "
            f"{report.queued} queued, {report.duplicates} already there"
        )
        end = "\r" if self._out.isatty() else "\n"
        print(line, end=end, file=self._out, flush=True)
