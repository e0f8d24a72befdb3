"""Metrics shared by every web and worker process, kept in Redis; rendered for Prometheus.

Where they are written:

* push outcomes: ``dt:metrics:pushes`` — ``accepted`` and ``duplicate`` inside the
  dedupe+enqueue script (no extra round trip), ``rejected:<status>:<reason>`` by the view;
* deliveries: ``dt:metrics:delivery:<destination>`` (``delivered``, ``retried``,
  ``dead_lettered``), ``dt:metrics:latency:<destination>`` (receive-to-delivered histogram:
  one field per bucket plus ``sum``) and ``dt:metrics:health:<destination>`` (last success
  and failure) — one pipelined round trip per job, next to RQ's own ~20;
* skips: ``dt:skipped:<destination>`` by reason (``workers.jobs``).

Gauges (queue depth, oldest queued event, scheduled retries, failed jobs, dead letters) are
read at scrape time. Every key here is a small hash with a fixed set of fields, so none
grows with traffic. ``render`` is pure; ``collect`` is the I/O.

Job accounting (``JobAccount``): every job created (``connector.core.keys.JOB_LEDGER``) is either
settled (delivered, skipped, dead-lettered: counted by the worker in the transaction in which
RQ files the job) or somewhere in RQ (queued, stranded in the intermediate queue, in progress,
scheduled, failed). Counters and RQ's structures are read in one MULTI, so the difference,
``unaccounted``, is exact at that instant: anything but 0 means jobs were lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis

from connector.core import keys
from connector.core.keys import (
    DEAD_LETTERS,
    DELIVERY_PREFIX,
    HEALTH_PREFIX,
    INTERMEDIATE_SUFFIX,
    JOB_LEDGER,
    JOB_PREFIX,
    LATENCY_BUCKETS_S,
    LATENCY_PREFIX,
    PUSH_COUNTERS,
    QUEUE_PREFIX,
    SKIPPED_PREFIX,
    bucket_name,
)
from connector.core.redis_conn import reply_text
from connector.core.times import parse_rfc3339


@dataclass(frozen=True)
class JobAccount:
    """Where every job is, at one instant (see the module docstring)."""

    created: int = 0
    delivered: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    finished: int = 0
    """Jobs of other functions RQ finished on the connector's queue (normally 0)."""
    queued: int = 0
    intermediate: int = 0
    """Dequeued but not (yet) started: a worker died in between, and maintenance will retry them."""
    started: int = 0
    scheduled: int = 0
    failed: int = 0
    """In RQ's failed registry: maintenance turns them into dead letters within seconds."""

    @property
    def settled(self) -> int:
        return self.delivered + self.skipped + self.dead_lettered + self.finished

    @property
    def pending(self) -> int:
        return self.queued + self.intermediate + self.started + self.scheduled + self.failed

    @property
    def unaccounted(self) -> int:
        """Jobs created that are neither settled nor anywhere in RQ: lost. Must be 0."""
        return self.created - self.settled - self.pending


@dataclass
class Snapshot:
    """Everything ``/metrics`` and ``/status`` show, read from Redis at one moment."""

    pushes: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    health: dict[str, dict[str, float]] = field(default_factory=dict)
    queue: str = "dt-forward"
    queue_depth: int = 0
    oldest_queued_age_s: float = 0.0
    scheduled: int = 0
    started: int = 0
    failed: int = 0
    dead_letters: int = 0
    jobs: JobAccount = field(default_factory=JobAccount)

    @property
    def rejected(self) -> dict[tuple[str, str], int]:
        """Rejected pushes by (status, reason)."""
        out: dict[tuple[str, str], int] = {}
        for key, count in self.pushes.items():
            kind, _, rest = key.partition(":")
            if kind == "rejected":
                status, _, reason = rest.partition(":")
                out[(status, reason)] = count
        return out

    @property
    def received(self) -> int:
        return self.pushes.get("accepted", 0) + self.pushes.get("duplicate", 0) + sum(self.rejected.values())

    @property
    def verified(self) -> int:
        """Pushes whose signature checked out (accepted, duplicate, or signed but malformed)."""
        malformed = sum(n for (status, _), n in self.rejected.items() if status == "400")
        return self.pushes.get("accepted", 0) + self.pushes.get("duplicate", 0) + malformed


def collect(redis: Redis, *, queue_name: str, destinations: Sequence[str], now: float) -> Snapshot:
    """Read a ``Snapshot`` (two round trips: one MULTI, so all of it is one instant, then the
    oldest job's time)."""
    queue_key = f"{QUEUE_PREFIX}{queue_name}"
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(PUSH_COUNTERS)
    for destination in destinations:
        pipe.hgetall(DELIVERY_PREFIX + destination)
        pipe.hgetall(SKIPPED_PREFIX + destination)
        pipe.hgetall(LATENCY_PREFIX + destination)
        pipe.hgetall(HEALTH_PREFIX + destination)
    pipe.llen(queue_key)
    pipe.lindex(queue_key, 0)
    pipe.zcard(keys.scheduled_key(queue_name))
    pipe.zcard(keys.started_key(queue_name))
    pipe.zcard(keys.failed_key(queue_name))
    pipe.zcard(DEAD_LETTERS)
    pipe.hgetall(JOB_LEDGER)
    pipe.llen(queue_key + INTERMEDIATE_SUFFIX)
    replies = pipe.execute()
    snap = Snapshot(queue=queue_name, pushes=_ints(replies[0]))
    at = 1
    for destination in destinations:
        snap.deliveries[destination] = _ints(replies[at])
        snap.skipped[destination] = _ints(replies[at + 1])
        snap.latency[destination] = _floats(replies[at + 2])
        snap.health[destination] = _floats(replies[at + 3])
        at += 4
    depth, oldest_id, snap.scheduled, snap.started, snap.failed, snap.dead_letters, ledger, stranded = replies[at:]
    snap.queue_depth = int(depth)
    counts = _ints(ledger)
    snap.jobs = JobAccount(
        created=counts.get("created", 0),
        delivered=counts.get("delivered", 0),
        skipped=counts.get("skipped", 0),
        dead_lettered=counts.get("dead_lettered", 0),
        finished=counts.get("finished", 0),
        queued=snap.queue_depth,
        intermediate=int(stranded),
        started=snap.started,
        scheduled=snap.scheduled,
        failed=snap.failed,
    )
    if oldest_id:
        enqueued = redis.hget(JOB_PREFIX + reply_text(oldest_id), "enqueued_at")
        if enqueued:
            snap.oldest_queued_age_s = max(0.0, now - _rq_time(reply_text(enqueued)))
    return snap


def render(snap: Snapshot, *, destinations: Sequence[str]) -> str:
    """The snapshot in Prometheus text exposition format (``prometheus_client``). Pure."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap, tuple(destinations)))
    return generate_latest(registry).decode()


CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The exposition's content type (text format 0.0.4)."""


class _SnapshotCollector(Collector):
    """The families of one snapshot, read from Redis at scrape time rather than counted in-process:
    every web and worker process counts into the same Redis hashes."""

    def __init__(self, snap: Snapshot, destinations: tuple[str, ...]) -> None:
        self._snap = snap
        self._destinations = destinations

    def collect(self) -> Iterator[Metric]:
        snap, destinations, jobs = self._snap, self._destinations, self._snap.jobs
        queue = {"queue": snap.queue}
        yield _counter("pushes_received", "Pushes answered (accepted, duplicate or rejected).", [({}, snap.received)])
        yield _counter("pushes_verified", "Pushes whose signature verified.", [({}, snap.verified)])
        yield _counter(
            "pushes",
            "Pushes by outcome.",
            [
                ({"outcome": "accepted"}, snap.pushes.get("accepted", 0)),
                ({"outcome": "duplicate"}, snap.pushes.get("duplicate", 0)),
                ({"outcome": "rejected"}, sum(snap.rejected.values())),
            ],
        )
        yield _counter(
            "pushes_rejected",
            "Rejected pushes by HTTP status and reason.",
            [({"status": s, "reason": r}, n) for (s, r), n in sorted(snap.rejected.items())],
        )
        yield _counter(
            "events_enqueued",
            "Events queued for the destinations (new, not duplicates).",
            [({}, snap.pushes.get("accepted", 0))],
        )
        yield _counter(
            "deliveries",
            "Delivery attempts by destination and outcome.",
            [
                ({"destination": d, "outcome": outcome}, snap.deliveries.get(d, {}).get(outcome, 0))
                for d in destinations
                for outcome in ("delivered", "retried", "dead_lettered")
            ],
        )
        yield _counter(
            "skipped",
            "Events the mapping skips, by destination and reason.",
            [
                ({"destination": d, "reason": r}, n)
                for d in destinations
                for r, n in sorted(snap.skipped.get(d, {}).items())
            ],
        )
        yield _gauge("queue_depth", "Jobs waiting in the queue.", [(queue, snap.queue_depth)])
        yield _gauge(
            "oldest_queued_age_seconds",
            "Age of the oldest waiting job (0 when none).",
            [(queue, round(snap.oldest_queued_age_s, 3))],
        )
        yield _gauge("scheduled_retries", "Jobs waiting for a retry.", [(queue, snap.scheduled)])
        yield _gauge("jobs_in_progress", "Jobs being worked on.", [(queue, snap.started)])
        yield _gauge("failed_jobs", "Jobs RQ failed (crashed workers, bugs).", [(queue, snap.failed)])
        yield _gauge("dead_letters", "Deliveries given up on, kept for replay.", [({}, snap.dead_letters)])
        yield _counter(
            "jobs_created",
            "Jobs created (one per accepted event and destination, and per replay).",
            [({}, jobs.created)],
        )
        yield _counter(
            "jobs_settled",
            "Jobs finished, by outcome.",
            [
                ({"outcome": "delivered"}, jobs.delivered),
                ({"outcome": "skipped"}, jobs.skipped),
                ({"outcome": "dead_lettered"}, jobs.dead_lettered),
                ({"outcome": "other"}, jobs.finished),
            ],
        )
        yield _gauge(
            "jobs_stranded",
            "Jobs a dead worker left between dequeue and execution (retried by maintenance).",
            [(queue, jobs.intermediate)],
        )
        yield _gauge(
            "jobs_unaccounted",
            "Jobs created that are neither settled nor anywhere in RQ: lost (must be 0).",
            [(queue, jobs.unaccounted)],
        )
        latency = HistogramMetricFamily(
            "dt_connector_delivery_latency_seconds", "Receive-to-delivered time.", labels=["destination"]
        )
        for d in destinations:
            fields = snap.latency.get(d, {})
            cumulative, buckets = 0.0, []
            for bound in [*(bucket_name(b) for b in LATENCY_BUCKETS_S), "+Inf"]:
                cumulative += fields.get(bound, 0.0)
                buckets.append((bound, cumulative))
            latency.add_metric([d], buckets, sum_value=round(fields.get("sum", 0.0), 6))
        yield latency
        yield _gauge(
            "last_success_timestamp_seconds",
            "When the destination last accepted an event (0: never).",
            [({"destination": d}, snap.health.get(d, {}).get("last_ok", 0.0)) for d in destinations],
        )
        yield _gauge(
            "last_failure_timestamp_seconds",
            "When a delivery to the destination last failed (0: never).",
            [({"destination": d}, snap.health.get(d, {}).get("last_error", 0.0)) for d in destinations],
        )


Samples = Iterable[tuple[Mapping[str, str], float]]
_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)


def _counter(name: str, documentation: str, samples: Samples) -> CounterMetricFamily:
    rows = list(samples)
    return _filled(CounterMetricFamily(f"dt_connector_{name}", documentation, labels=_label_names(rows)), rows)


def _gauge(name: str, documentation: str, samples: Samples) -> GaugeMetricFamily:
    rows = list(samples)
    return _filled(GaugeMetricFamily(f"dt_connector_{name}", documentation, labels=_label_names(rows)), rows)


def _label_names(rows: list[tuple[Mapping[str, str], float]]) -> list[str]:
    return list(rows[0][0]) if rows else []


def _filled(family: _Family, rows: list[tuple[Mapping[str, str], float]]) -> _Family:
    for labels, value in rows:
        family.add_metric(list(labels.values()), value)
    return family


def _ints(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    return {reply_text(k): int(float(reply_text(v))) for k, v in raw.items()}


def _floats(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    out = {}
    for k, v in raw.items():
        try:
            out[reply_text(k)] = float(reply_text(v))
        except ValueError:
            continue  # a text field (e.g. a failure reason) is not a number
    return out


def _rq_time(text: str) -> float:
    return parse_rfc3339(text).timestamp()
