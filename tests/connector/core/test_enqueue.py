"""Dedupe and enqueue in one Redis step: redeliveries, failures that release the claim, a job per destination."""

from __future__ import annotations

import threading
import time

from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from connector.cli.dev.embedded_redis import EmbeddedRedis, free_port
from connector.web.app import create_app
from tests.support.helpers import dt_body, make_settings, push, queued_ids, sign


def test_redelivery_is_acknowledged_but_not_queued_again(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtB")
    assert push(client, body).get_json() == {"status": "accepted"}
    second = push(client, body, sign(body))  # DT may re-sign a retry
    assert second.status_code == 200
    assert second.get_json() == {"status": "duplicate"}
    assert queued_ids(redis) == ["log-evtB"]
    assert 0 < redis.ttl("dt:seen:evtB") <= 24 * 3600


def test_forged_push_does_not_burn_the_event_id(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtE")
    assert push(client, body, sign(body, "attacker-secret-0123456789abcdef")).status_code == 401
    assert push(client, body).get_json() == {"status": "accepted"}


def test_failed_enqueue_is_503_and_redelivery_gets_through(client: FlaskClient, redis: Redis):
    """A write that fails inside the enqueue must not leave the id claimed."""
    body = dt_body(event_id="evtF")
    redis.set("rq:queue:dt-forward", "not a list")  # RPUSH inside the script now fails (WRONGTYPE)
    response = push(client, body)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert response.get_json()["error"] == "redis-unavailable"
    assert not redis.exists("dt:seen:evtF")
    redis.delete("rq:queue:dt-forward")
    assert push(client, body).get_json() == {"status": "accepted"}
    assert queued_ids(redis) == ["log-evtF"]


def test_failed_job_write_releases_the_claim(client: FlaskClient, redis: Redis):
    body = dt_body(event_id="evtH")
    redis.set("rq:job:log-evtH", "in the way")  # HSET inside the script fails (WRONGTYPE)
    assert push(client, body).status_code == 503
    assert not redis.exists("dt:seen:evtH")
    assert queued_ids(redis) == []
    redis.delete("rq:job:log-evtH")
    assert push(client, body).get_json() == {"status": "accepted"}
    assert queued_ids(redis) == ["log-evtH"]


def test_acknowledgement_waits_for_redis(client: FlaskClient, redis: Redis):
    """While Redis holds writes, the push is not answered; when answered, the job is there."""
    body = dt_body(event_id="evtG")
    token = sign(body)
    redis.execute_command("CLIENT", "PAUSE", 400, "WRITE")
    started = time.monotonic()
    result: dict[str, object] = {}

    def send():
        result["response"] = push(client, body, token)
        result["job_present"] = redis.exists("rq:job:log-evtG") == 1 and queued_ids(redis) == ["log-evtG"]

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(5)
    assert time.monotonic() - started >= 0.35
    assert result["response"].status_code == 200  # type: ignore[attr-defined]
    assert result["job_present"] is True


def test_a_redis_restart_between_pushes_costs_no_503(redis: Redis):
    """The pooled connection is stale after a restart; the push retries once on a new one."""
    own = EmbeddedRedis(port=free_port()).start()
    try:
        client = create_app(make_settings(own.url), configure_logs=False).test_client()
        assert push(client, dt_body(event_id="beforeR")).status_code == 200
        own.stop()
        own.start()  # same port, empty: the script cache is gone too
        response = push(client, dt_body(event_id="afterR"))
        assert response.status_code == 200, response.get_data()
        assert queued_ids(Redis.from_url(own.url)) == ["log-afterR"]
    finally:
        own.stop()


def test_every_destination_gets_its_own_job(redis: Redis, redis_server):
    settings = make_settings(redis_server.url, destinations=("log", "moost", "spot"))
    client = create_app(settings, configure_logs=False).test_client()
    assert push(client, dt_body(event_id="evtM")).get_json() == {"status": "accepted"}
    assert push(client, dt_body(event_id="evtM")).get_json() == {"status": "duplicate"}
    assert queued_ids(redis) == ["log-evtM", "moost-evtM", "spot-evtM"]
    for destination in ("log", "moost", "spot"):
        job = Job.fetch(f"{destination}-evtM", connection=redis, serializer=JSONSerializer)
        assert job.args[0] == destination and job.args[1]["event"]["eventId"] == "evtM"
