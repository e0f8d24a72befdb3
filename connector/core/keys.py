"""Every Redis key the connector's processes share: the one place their names are written down.

Both sides read and write these: the receiver (dedupe markers, RQ's queue and job hashes, push
counters, the job ledger), the workers (delivery metrics, dead letters, the MOOST token, their
maintenance lock), the operator pages (all of them, read-only) and the CLI (backfill checkpoints,
replays). RQ's own keys are listed where the connector reads or writes them directly, taken
from RQ's classes: RQ owns their layout.

``RQ_KEY_PREFIX`` (read by RQ when it is imported; default ``rq``) names a deployment's keys in a
shared Redis: RQ's start with ``<prefix>:``, and the connector's with ``<prefix>:dt:`` (``dt:``
with the default prefix). Two deployments with different prefixes share nothing, dedupe markers
included.

Nothing here grows with traffic without a bound: markers, delivered jobs, per-minute counts,
dead letters and checkpoints expire; every other hash has a fixed set of fields.
"""

from __future__ import annotations

from rq import Queue
from rq.defaults import RQ_KEY_PREFIX
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

DT = "dt:" if RQ_KEY_PREFIX == "rq" else f"{RQ_KEY_PREFIX}:dt:"
"""The start of every key of the connector's own."""

# ---- written by the receiver (in its one Lua call) ---------------------------------------------

SEEN_PREFIX = DT + "seen:"
"""``dt:seen:<eventId>``: the dedupe marker, kept ``DEDUPE_TTL_S``."""

PUSH_COUNTERS = DT + "metrics:pushes"
"""Hash of push counters by outcome (``accepted``, ``duplicate``, ``rejected:<status>:<reason>``)."""

JOB_LEDGER = DT + "metrics:jobs"
"""Hash counting jobs: ``created`` (by the dedupe+enqueue script and by replays) and each job's one
outcome (``delivered``, ``skipped``, ``dead_lettered``, ``finished``), counted once per job by the
workers. With RQ's queue and registries it accounts for every job (``connector.web.ops.metrics``)."""

# ---- RQ's, read or written directly ------------------------------------------------------------

QUEUE_PREFIX = Queue.redis_queue_namespace_prefix
"""``rq:queue:<name>``: the list of job ids waiting."""

INTERMEDIATE_SUFFIX = ":intermediate"
"""RQ moves a dequeued job id from ``rq:queue:<name>`` to ``rq:queue:<name>:intermediate`` until its
execution is recorded; a worker that dies in between leaves it there for RQ's cleanup to find."""

JOB_PREFIX = Job.redis_job_namespace_prefix
"""``rq:job:<id>``: one job's hash."""

QUEUES_SET = Queue.redis_queues_keys
"""The set of queue keys (what ``rq info`` lists)."""


def queue_key(queue_name: str) -> str:
    return f"{QUEUE_PREFIX}{queue_name}"


def scheduled_key(queue_name: str) -> str:
    """RQ's scheduled registry: jobs waiting for a retry (sorted set, score = due time)."""
    return ScheduledJobRegistry.key_template.format(queue_name)


def started_key(queue_name: str) -> str:
    """RQ's started registry: executions in progress (sorted set, score = expiry)."""
    return StartedJobRegistry.key_template.format(queue_name)


def failed_key(queue_name: str) -> str:
    """RQ's failed registry (the workers turn its jobs into dead letters)."""
    return FailedJobRegistry.key_template.format(queue_name)


# ---- written by the workers --------------------------------------------------------------------

DELIVERY_PREFIX = DT + "metrics:delivery:"
"""``…:<destination>``: counters ``delivered``, ``retried``, ``dead_lettered``."""

LATENCY_PREFIX = DT + "metrics:latency:"
"""``…:<destination>``: receive-to-delivered histogram, one field per bucket (``latency_field``)
plus ``sum``."""

LATENCY_BUCKETS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14400, 43200)
"""Upper bounds of the receive-to-delivered histogram, seconds: from a healthy pipeline's
sub-second to DT's 12-hour redelivery horizon (retries stretch to ~15 h: +Inf)."""


def latency_field(seconds: float) -> str:
    """The histogram field a latency is counted in: its bucket's upper bound, or ``+Inf``. Pure."""
    for bound in LATENCY_BUCKETS_S:
        if seconds <= bound:
            return bucket_name(bound)
    return "+Inf"


def bucket_name(bound: float) -> str:
    """A bucket's field name: its bound without a trailing ``.0`` (``0.25``, ``1``, ``43200``)."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))

HEALTH_PREFIX = DT + "metrics:health:"
"""``…:<destination>``: ``last_ok``, ``last_error``, ``last_error_reason``."""

SKIPPED_PREFIX = DT + "skipped:"
"""``…:<destination>``: events the mapping skips, by reason."""

MINUTE_PREFIX = DT + "metrics:minute:"
"""``dt:metrics:minute:<destination>:<epoch minute>``: deliveries in that minute (kept 2 h)."""

MINUTE_TTL_S = 7200

DEVICES_KEY = DT + "devices"
"""Hash: device id → JSON of its last delivered event (one field per device: bounded by the fleet)."""

DEAD_LETTERS = DT + "dead"
"""The dead-letter index: sorted set of keys, score = failure time (trimmed on every write)."""

DEAD_LETTER_PREFIX = DT + "dead:"
"""``dt:dead:<job id>``: one dead letter's hash, kept 14 days."""

MOOST_TOKEN_KEY = DT + "moost:token"
"""MOOST's bearer token, shared by every worker process."""

MOOST_BUILDING_LOCK_PREFIX = DT + "moost:building-lock:"
"""``…:<customerBuildingId>``: held while a building's device set is read, merged and written (by
``setup moost`` and the labelsChanged sync), so two writers never drop each other's device."""

MAINTENANCE_LOCK_PREFIX = DT + "maintenance:"
"""``…:<queue>``: held by the worker process cleaning the queue's registries (60 s lease)."""

# ---- written by the CLI ------------------------------------------------------------------------

BACKFILL_PREFIX = DT + "backfill:"
"""``dt:backfill:<run>``: a backfill's checkpoints, so an interrupted run resumes (kept 7 days)."""

SPOT_INTEGRATION_KEY = DT + "spot:integration"
"""The Spot AI integration id ``dt-connector setup spot`` found or created (``SPOT_INTEGRATION_ID``
overrides it). Written by the CLI, read by the workers; no expiry (it is configuration)."""

SPOT_EVENT_TYPES_PREFIX = DT + "spot:event-types:"
"""``…:<integration id>``: hash, DT event type → the Spot integration event type id ``setup spot``
made for it (a mapping's non-zero ``event_type_id`` overrides). One field per DT event type; no expiry."""


def spot_event_types_key(integration_id: int) -> str:
    return f"{SPOT_EVENT_TYPES_PREFIX}{integration_id}"
