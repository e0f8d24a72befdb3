"""The job spec: what a job is, for the receiver that writes jobs and the workers that run them. Pure.

One job per event and destination calls ``FORWARD_FUNC(destination, push, received_at[, replay])``.
This module owns its id (``job_id``, ``replay_job_id``), its call data (``job_payload``), its
serializer, and its RQ options (timeouts, TTLs, crash retries).

RQ's own ``Queue.enqueue`` costs two MULTI round trips and builds a ``Job`` object per
call; the receiver instead writes the job hash and pushes its id inside the same Lua
script that dedupes the event (see ``connector.core.enqueue``). To stay byte-compatible with
RQ, the field layout is taken once, at start-up, from a template job that RQ itself
serialises (``JobTemplate.from_rq``, through ``connector.core.rq_adapter.job_hash_fields``);
per push only the id, payload and timestamps change. The tests run these jobs through every RQ
worker mode, so a layout change in a new RQ release fails the tests, not production.

Jobs reference the worker function by dotted path (``FORWARD_FUNC``) and are JSON, read
by the workers with ``JobSerializer`` (orjson, the parser the receiver validated the body with),
so ``connector/`` never imports ``workers/``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from rq import Retry

from connector.core.rq_adapter import queued_job_fields

FORWARD_FUNC = "workers.jobs.forward"
"""Dotted path of the job function: ``forward(destination, push, received_at)``."""

RESULT_TTL_S = 10
"""How long RQ keeps a delivered job. Not 0: with 0, RQ deletes the job and its registry
entries right away, which costs more per job (about 0.6 ms of a worker's ~6 ms of CPU,
measured) than letting the hash expire; 10 s of finished jobs is a few MB at most."""

CRASH_RETRY_INTERVALS_S = (10, 60, 300)
"""Waits before RQ re-runs a job that crashed or was abandoned by a killed worker (RQ finds
those in its started registry at its next maintenance). Downstream failures are retried by
the job itself on ``RETRY_SCHEDULE_S``; these are for the worker's own failures."""

DEFAULT_FAILURE_TTL_S = 14 * 24 * 3600
"""How long RQ keeps a failed job (bounded so Redis cannot grow without limit)."""

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SAFE_ID_MAX = 64


def job_id(destination: str, event_id: str) -> str:
    """The deterministic RQ job id of one event for one destination: ``<destination>-<id part>``.

    RQ allows only letters, digits, ``_`` and ``-``. An eventId made of those, at most 64
    characters long (DT's are 20), is the id part as it is; any other eventId becomes ``x`` and
    its full SHA-256 in hex: 65 characters, longer than any id used as it is, so no eventId's job
    id can equal another's (short of a SHA-256 collision). Destination names contain neither
    ``-`` nor ``_``, so the destination part is unambiguous too.
    """
    if len(event_id) <= _SAFE_ID_MAX and _SAFE_ID.fullmatch(event_id):
        return f"{destination}-{event_id}"
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{destination}-x{digest}"


def replay_job_id(destination: str, letter_key: str, now_ns: int) -> str:
    """The RQ job id of one replay of dead letter ``letter_key``: ``<destination>_r<ns>_<key>``.

    ``_`` right after the destination never occurs in a ``job_id`` (which has ``-`` there), so a
    replay cannot take an event's job id; the time in nanoseconds keeps two replays apart.
    """
    return f"{destination}_r{now_ns}_{letter_key}"


def job_description(destination: str) -> str:
    """The ``description`` RQ shows for a job (``rq info``, its worker log line)."""
    return f"forward to {destination}"


class JobSerializer:
    """RQ serializer for the connector's jobs: JSON through orjson.

    The receiver validates each body with orjson; reading the job with the same parser means
    the worker sees exactly what was accepted (the standard library would read an integer above
    2**64 that orjson took as a float as an exact int, which no JSON encoder downstream takes).
    The bytes are plain JSON, so RQ's own ``JSONSerializer`` reads these jobs too.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)


def job_payload(destination: str, body: bytes, received_at: float, *, replay: bool = False) -> bytes:
    """RQ JSON-serialised call data: ``forward(destination, <push body>, received_at[, replay])``.

    ``body`` is already-validated JSON, so it is spliced in verbatim rather than
    re-serialised. RQ reads uncompressed ``data`` (``Job.restore`` falls back to it).
    ``replay`` marks events from DT's history (backfill) or dead letters queued again: MOOST
    takes those older than ``MOOST_LIVE_MAX_AGE_S`` on its historical endpoint, Spot AI takes
    those of a known Spot device on bulk import.
    """
    return b'["%s",null,["%s",%s,%r%s],{}]' % (
        FORWARD_FUNC.encode(),
        destination.encode(),
        body,
        received_at,
        b",true" if replay else b"",
    )


def rq_timestamp(at: float) -> bytes:
    """``at`` (Unix seconds) in RQ's timestamp format (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC)."""
    seconds = int(at)
    micros = round((at - seconds) * 1_000_000)  # rounds like datetime.fromtimestamp
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return b"%s.%06dZ" % (_second_prefix(seconds), micros)


@lru_cache(maxsize=16)
def _second_prefix(seconds: int) -> bytes:
    # strftime dominated this function; pushes arriving in the same second share the prefix.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()


@dataclass(frozen=True)
class JobTemplate:
    """The constant part of every job hash, as flat field/value pairs."""

    static_fields: tuple[bytes, ...]

    @classmethod
    def from_rq(cls, *, queue_name: str, timeout_s: int, failure_ttl_s: int = DEFAULT_FAILURE_TTL_S) -> JobTemplate:
        """Serialise a template job with RQ itself and keep the fields that never vary."""
        fields = queued_job_fields(
            FORWARD_FUNC,
            args=("log", {}, 0.0),
            serializer=JobSerializer,
            timeout=timeout_s,
            result_ttl=RESULT_TTL_S,
            failure_ttl=failure_ttl_s,
            origin=queue_name,
            # A job whose worker died (SIGKILL, OOM, a lost dyno) or that crashed is retried by
            # RQ rather than parked as failed: see CRASH_RETRY_INTERVALS_S.
            retry=Retry(max=len(CRASH_RETRY_INTERVALS_S), interval=list(CRASH_RETRY_INTERVALS_S)),
            leave_out=VARYING_FIELDS,
        )
        return cls(static_fields=fields)


VARYING_FIELDS = frozenset({"data", "description", "created_at", "enqueued_at"})
"""The job hash fields the dedupe+enqueue script writes per job (the rest are the template's)."""
