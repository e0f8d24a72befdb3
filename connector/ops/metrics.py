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

Job accounting (``JobAccount``): every job created (``connector.jobspec.JOB_LEDGER``) is either
settled (delivered, skipped, dead-lettered: counted by the worker in the transaction in which
RQ files the job) or somewhere in RQ (queued, stranded in the intermediate queue, in progress,
scheduled, failed). Counters and RQ's structures are read in one MULTI, so the difference,
``unaccounted``, is exact at that instant: anything but 0 means jobs were lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis import Redis

from connector import keys
from connector.keys import (
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
from connector.redis_conn import reply_text


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
    """The snapshot in Prometheus text exposition format (version 0.0.4). Pure."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        out.append(f"# HELP dt_connector_{name} {help_text}")
        out.append(f"# TYPE dt_connector_{name} {kind}")
        for labels, value in samples:
            out.append(f"dt_connector_{name}{_labels(labels)} {_number(value)}")

    family("pushes_received_total", "counter", "Pushes answered (accepted, duplicate or rejected).",
           [({}, snap.received)])
    family("pushes_verified_total", "counter", "Pushes whose signature verified.", [({}, snap.verified)])
    family("pushes_total", "counter", "Pushes by outcome.", [
        ({"outcome": "accepted"}, snap.pushes.get("accepted", 0)),
        ({"outcome": "duplicate"}, snap.pushes.get("duplicate", 0)),
        ({"outcome": "rejected"}, sum(snap.rejected.values())),
    ])
    family("pushes_rejected_total", "counter", "Rejected pushes by HTTP status and reason.",
           [({"status": s, "reason": r}, n) for (s, r), n in sorted(snap.rejected.items())])
    family("events_enqueued_total", "counter", "Events queued for the destinations (new, not duplicates).",
           [({}, snap.pushes.get("accepted", 0))])
    family("deliveries_total", "counter", "Delivery attempts by destination and outcome.", [
        ({"destination": d, "outcome": outcome}, snap.deliveries.get(d, {}).get(outcome, 0))
        for d in destinations
        for outcome in ("delivered", "retried", "dead_lettered")
    ])
    family("skipped_total", "counter", "Events the mapping skips, by destination and reason.",
           [({"destination": d, "reason": r}, n) for d in destinations for r, n in sorted(snap.skipped[d].items())])
    family("queue_depth", "gauge", "Jobs waiting in the queue.", [({"queue": snap.queue}, snap.queue_depth)])
    family("oldest_queued_age_seconds", "gauge", "Age of the oldest waiting job (0 when none).",
           [({"queue": snap.queue}, round(snap.oldest_queued_age_s, 3))])
    family("scheduled_retries", "gauge", "Jobs waiting for a retry.", [({"queue": snap.queue}, snap.scheduled)])
    family("jobs_in_progress", "gauge", "Jobs being worked on.", [({"queue": snap.queue}, snap.started)])
    family("failed_jobs", "gauge", "Jobs RQ failed (crashed workers, bugs).", [({"queue": snap.queue}, snap.failed)])
    family("dead_letters", "gauge", "Deliveries given up on, kept for replay.", [({}, snap.dead_letters)])
    jobs = snap.jobs
    family("jobs_created_total", "counter", "Jobs created (one per accepted event and destination, and per replay).",
           [({}, jobs.created)])
    family("jobs_settled_total", "counter", "Jobs finished, by outcome.", [
        ({"outcome": "delivered"}, jobs.delivered),
        ({"outcome": "skipped"}, jobs.skipped),
        ({"outcome": "dead_lettered"}, jobs.dead_lettered),
        ({"outcome": "other"}, jobs.finished),
    ])
    family("jobs_stranded", "gauge", "Jobs a dead worker left between dequeue and execution (retried by maintenance).",
           [({"queue": snap.queue}, jobs.intermediate)])
    family("jobs_unaccounted", "gauge", "Jobs created that are neither settled nor anywhere in RQ: lost (must be 0).",
           [({"queue": snap.queue}, jobs.unaccounted)])
    out.append("# HELP dt_connector_delivery_latency_seconds Receive-to-delivered time.")
    out.append("# TYPE dt_connector_delivery_latency_seconds histogram")
    for d in destinations:
        fields = snap.latency.get(d, {})
        cumulative = 0.0
        for bound in [*(bucket_name(b) for b in LATENCY_BUCKETS_S), "+Inf"]:
            cumulative += fields.get(bound, 0.0)
            out.append(f"dt_connector_delivery_latency_seconds_bucket{_labels({'destination': d, 'le': bound})} "
                       f"{_number(cumulative)}")
        out.append(f"dt_connector_delivery_latency_seconds_sum{_labels({'destination': d})} "
                   f"{_number(round(fields.get('sum', 0.0), 6))}")
        out.append(f"dt_connector_delivery_latency_seconds_count{_labels({'destination': d})} {_number(cumulative)}")
    family("last_success_timestamp_seconds", "gauge", "When the destination last accepted an event (0: never).",
           [({"destination": d}, snap.health.get(d, {}).get("last_ok", 0.0)) for d in destinations])
    family("last_failure_timestamp_seconds", "gauge", "When a delivery to the destination last failed (0: never).",
           [({"destination": d}, snap.health.get(d, {}).get("last_error", 0.0)) for d in destinations])
    return "\n".join(out) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)



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
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
