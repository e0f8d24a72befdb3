"""Tests for connector.core.jobspec: ids, payloads and timestamps RQ can read."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from rq.job import validate_job_id
from rq.utils import utcformat

from connector.core.jobspec import JobSerializer, job_id, job_payload, replay_job_id, rq_timestamp
from tests.support.helpers import dt_body


def test_job_id_keeps_safe_dt_ids_readable():
    assert job_id("log", "cpbg96qngr7ai7ldarrg") == "log-cpbg96qngr7ai7ldarrg"


def test_job_id_hashes_ids_rq_would_refuse():
    unsafe = job_id("log", "a:b/c d")
    assert unsafe.startswith("log-x") and all(c.isalnum() or c in "-_" for c in unsafe)
    assert unsafe != job_id("log", "a:b/c e")


def test_a_safe_id_that_looks_like_a_hash_keeps_its_own_job_id():
    """The collision found on main: a safe eventId spelling out an unsafe id's hashed form."""
    unsafe = "a:b/c d"
    hashed_part = job_id("moost", unsafe).removeprefix("moost-")
    assert job_id("moost", hashed_part) != job_id("moost", unsafe)
    old_scheme = "h" + hashlib.sha256(unsafe.encode()).hexdigest()[:40]  # what collided before
    assert job_id("moost", old_scheme) != job_id("moost", unsafe)


_EVENT_IDS = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-x", min_size=1, max_size=70),
    st.text(min_size=1, max_size=80),
)


@given(_EVENT_IDS, _EVENT_IDS)
def test_distinct_event_ids_never_share_a_job_id(first: str, second: str):
    if first != second:
        assert job_id("spot", first) != job_id("spot", second)
    validate_job_id(job_id("spot", first))  # RQ accepts every one


@given(_EVENT_IDS, st.integers(min_value=0, max_value=2**63))
def test_a_replay_never_takes_an_event_job_id(event_id: str, now_ns: int):
    letter = job_id("moost", event_id)
    replay = replay_job_id("moost", letter, now_ns)
    validate_job_id(replay)
    # Event job ids are "<destination>-…"; a replay's is "<destination>_…".
    assert replay.startswith("moost_r") and not replay.startswith("moost-")
    assert replay != replay_job_id("moost", letter, now_ns + 1)


def test_job_serializer_reads_numbers_as_the_receiver_parsed_them():
    """orjson (receiver) reads an integer beyond 64 bits as a float; the job must too, or the
    worker holds an int no JSON encoder downstream accepts."""
    body = b'{"event":{"eventId":"big","eventType":"temperature","data":{"x":18446744073709551616}}}'
    data = JobSerializer.loads(job_payload("spot", body, 1.0))
    assert isinstance(data[2][1]["event"]["data"]["x"], float)
    assert JobSerializer.loads(JobSerializer.dumps(data)) == data


def test_payload_is_rq_json_call_data_with_the_body_verbatim():
    body = dt_body(event_id="p1")
    payload = job_payload("log", body, 1716978843.970415)
    assert json.loads(payload) == ["workers.jobs.forward", None, ["log", json.loads(body), 1716978843.970415], {}]
    assert body in payload


def test_timestamp_matches_rq_format():
    for at in (0.0, 1716978843.970415, 1716978843.000001, 1799999999.999999, 1799999999.9999996):
        expected = utcformat(datetime.fromtimestamp(at, UTC)).encode()
        assert rq_timestamp(at) == expected
