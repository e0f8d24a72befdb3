"""Tests for connector.rqjob: ids, payloads and timestamps RQ can read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rq.utils import utcformat

from connector.rqjob import job_id, job_payload, rq_timestamp
from tests.conftest import dt_body


def test_job_id_keeps_safe_dt_ids_readable():
    assert job_id("log", "cpbg96qngr7ai7ldarrg") == "log-cpbg96qngr7ai7ldarrg"


def test_job_id_hashes_ids_rq_would_refuse():
    unsafe = job_id("log", "a:b/c d")
    assert unsafe.startswith("log-h") and all(c.isalnum() or c in "-_" for c in unsafe)
    assert unsafe != job_id("log", "a:b/c e")


def test_payload_is_rq_json_call_data_with_the_body_verbatim():
    body = dt_body(event_id="p1")
    payload = job_payload("log", body, 1716978843.970415)
    assert json.loads(payload) == ["workers.jobs.forward", None, ["log", json.loads(body), 1716978843.970415], {}]
    assert body in payload


def test_timestamp_matches_rq_format():
    for at in (0.0, 1716978843.970415, 1716978843.000001, 1799999999.999999, 1799999999.9999996):
        expected = utcformat(datetime.fromtimestamp(at, UTC)).encode()
        assert rq_timestamp(at) == expected
