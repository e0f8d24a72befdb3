"""POST /dt/events through the Flask app against the session's real Redis."""

from __future__ import annotations

import io
import json
import logging
import os
import time

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from connector.core.logs import AccessLog
from connector.web.app import create_app
from tests.support.helpers import OLD_SECRET, SECRET, dt_body, make_settings, push, queued_ids, sign


def test_accepted_push_is_queued_with_event_labels_metadata_and_time(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtA")
    before = time.time()
    response = push(client, body)
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted"}
    assert queued_ids(redis) == ["log-evtA"]
    job = Job.fetch("log-evtA", connection=redis, serializer=JSONSerializer)
    destination, payload, received_at = job.args
    assert destination == "log"
    assert payload == json.loads(body)
    assert before <= received_at <= time.time()
    assert job.func_name == "workers.jobs.forward"
    assert job.origin == "dt-forward"
    assert job.get_status() == "queued"


def test_unknown_event_type_is_accepted(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtC", event_type="brandNewType", data={"brandNewType": {}})
    assert push(client, body).status_code == 200
    assert queued_ids(redis) == ["log-evtC"]


def test_header_names_are_case_insensitive(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtD")
    response = client.post("/dt/events", data=body, headers={"x-dt-signature": sign(body)})
    assert response.status_code == 200


def test_rotated_secrets_both_accepted(redis: Redis, redis_server):
    app = create_app(make_settings(redis_server.url, signature_secrets=(SECRET, OLD_SECRET)), configure_logs=False)
    client = app.test_client()
    for n, secret in enumerate((SECRET, OLD_SECRET)):
        body = dt_body(event_id=f"rot{n}")
        assert push(client, body, sign(body, secret)).status_code == 200
    assert len(queued_ids(redis)) == 2


REJECTIONS = [
    # (name, body, token-or-callable, extra headers, status, reason)
    ("unsigned", dt_body(), "", {}, 401, "signature-missing"),
    ("garbage token", dt_body(), "not.a.jwt", {}, 401, "token-malformed"),
    ("wrong secret", dt_body(), lambda b: sign(b, "some-other-secret-0123456789abcdef"), {}, 401, "signature-invalid"),
    ("expired", dt_body(), lambda b: sign(b, now=time.time() - 7200), {}, 401, "token-expired"),
    ("other body", dt_body(), lambda b: sign(dt_body(event_id="zzz")), {}, 401, "checksum-mismatch"),
    ("not json", b"hello", None, {}, 400, "not-json"),
    ("not object", b"[1,2]", None, {}, 400, "not-an-object"),
    ("no eventId", b'{"event":{"eventType":"touch"}}', None, {}, 400, "no-event-id"),
    ("no eventType", b'{"event":{"eventId":"x"}}', None, {}, 400, "no-event-type"),
    ("not utf-8", b'{"event":"\xff"}', None, {}, 400, "not-utf8"),
]


@pytest.mark.parametrize(
    ("body", "token", "headers", "status", "reason"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_rejections_have_specific_status_and_queue_nothing(client, redis, body, token, headers, status, reason):
    if callable(token):
        token = token(body)
    response = push(client, body, token, **headers)
    assert response.status_code == status
    assert response.get_json()["error"] == reason
    assert response.get_json()["detail"]
    assert queued_ids(redis) == []
    assert redis.keys("dt:seen:*") == []


def test_body_over_limit_is_413(redis: Redis, redis_server):
    app = create_app(make_settings(redis_server.url, max_body_bytes=2048), configure_logs=False)
    big = dt_body(labels={"name": "x" * 4096})
    response = push(app.test_client(), big)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too-large"
    assert queued_ids(redis) == []


def test_chunked_body_over_limit_is_413(redis: Redis, redis_server):
    app = create_app(make_settings(redis_server.url, max_body_bytes=2048), configure_logs=False)
    big = dt_body(labels={"name": "x" * 4096})

    response = app.test_client().post(
        "/dt/events",
        input_stream=io.BytesIO(big),  # no Content-Length: the limit must apply while reading
        headers={"X-Dt-Signature": sign(big), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked bodies
    )
    assert response.status_code == 413
    assert queued_ids(redis) == []


def test_wrong_method_and_path_are_json_errors(client: FlaskClient):
    assert client.get("/dt/events").status_code == 405
    response = client.post("/nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not-found"}


def test_one_log_line_per_push_without_secrets(redis: Redis, redis_server, tmp_path):
    log_path = tmp_path / "access.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        app = create_app(make_settings(redis_server.url), configure_logs=False, access_log=AccessLog(fd))
        client = app.test_client()
        body = dt_body(event_id="evtLog", device_id="devLog")
        token = sign(body)
        push(client, body, token)
        push(client, body, token)
        push(client, body, "")
        push(client, b"[]", sign(b"[]"))
    finally:
        os.close(fd)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["outcome"] for line in lines] == ["accepted", "duplicate", "rejected", "rejected"]
    assert [line["level"] for line in lines] == ["info", "info", "warning", "warning"]
    assert lines[0]["eventId"] == "evtLog" and lines[0]["device"] == "devLog"
    assert lines[0]["eventType"] == "temperature" and lines[0]["ms"] >= 0
    assert lines[2]["reason"] == "signature-missing" and lines[2]["status"] == 401
    assert lines[3]["reason"] == "not-an-object" and "eventId" not in lines[3]
    assert token not in text and SECRET not in text and token.split(".")[2] not in text


def test_health_and_readiness(client: FlaskClient):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready", "redis": "ok"}


def test_jobs_run_on_a_real_rq_worker(client: FlaskClient, redis: Redis, caplog, worker_env):
    """The hand-built job hashes are valid RQ jobs: RQ's own worker executes them."""
    from rq import SimpleWorker

    for n in range(3):
        assert push(client, dt_body(event_id=f"run{n}")).status_code == 200
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    with caplog.at_level(logging.INFO, logger="workers.forward"):
        SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "workers.forward"]
    forwarded = [line for line in lines if line["log"] == "forward"]
    assert sorted(line["eventId"] for line in forwarded) == ["run0", "run1", "run2"]
    assert queue.count == 0
    assert len(queue.failed_job_registry) == 0
    assert 0 < redis.ttl("rq:job:log-run0") <= 10  # a delivered job expires after RESULT_TTL_S
