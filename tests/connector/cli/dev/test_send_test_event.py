"""``dt-connector send-test-event``: DT-shaped, DT-signed pushes, retried like DT retries."""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from connector.cli.dev.embedded_redis import free_port
from connector.cli.dev.send_test_event import DtSimulator, LocalIdentity, SendReport
from connector.cli.dev.simulate import Fleet, build_push, sign_hs256
from connector.core.events import DT_EVENT_TYPES, parse_push
from connector.web.receive.signature import VerificationPolicy, verify_push
from connector.web.receive.signing_keys import JwksKeyStore
from tests.support.helpers import SECRET, queued_ids
from tests.support.servers import gunicorn
from tests.support.standins import Reply, StandIn
from workers.translate.readings import readings_of

NOW = 1_790_000_000.0


@pytest.mark.parametrize("event_type", DT_EVENT_TYPES)
def test_every_type_is_a_push_the_receiver_verifies_and_the_workers_read(event_type):
    rng = random.Random(1)
    body = build_push(event_type, fleet=Fleet.create(rng), event_id="evt" + event_type, now=NOW, rng=rng)
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()  # compact, like DT
    assert list(json.loads(body)) == ["event", "labels", "metadata"]
    policy = VerificationPolicy(secrets=(SECRET.encode(),))
    verify_push(body, hs_token=sign_hs256(body, SECRET, now=NOW, jti="j1"), es_token=None, policy=policy, now=NOW + 5)
    push = parse_push(body)
    assert push.event_type == event_type and push.event_id == "evt" + event_type
    event = json.loads(body)["event"]
    if event_type != "labelsChanged":
        assert list(event["data"]) == [event_type]
        assert readings_of(event)  # the workers understand it


def test_asymmetric_signature_verifies_against_the_local_identity():
    identity = LocalIdentity(ec.generate_private_key(ec.SECP256R1()), kid="k1", org_id="org-1", port=free_port())
    rng = random.Random(2)
    body = build_push("contact", fleet=Fleet.create(rng), event_id="e1", now=time.time(), rng=rng)
    with identity:
        store = JwksKeyStore(identity.discovery_url)
        policy = VerificationPolicy(es_key_for=store, es_issuer=store.issuer, org_id="org-1")
        token = identity.signer.sign(body, now=time.time())
        verify_push(body, hs_token=None, es_token=token, policy=policy, now=time.time())
    assert "org-1" in repr(identity.signer) and "PRIVATE" not in repr(identity.signer)


def test_non_200_is_retried_until_accepted():
    standin = StandIn()
    try:
        standin.script("/dt/events", Reply(503, {"error": "redis-unavailable"}), Reply(200, {"status": "accepted"}))
        waits: list[float] = []
        sender = DtSimulator(f"{standin.url}/dt/events", secret=SECRET, sleep=waits.append)
        report = SendReport()
        assert sender.deliver(build_push_for_test(), report) is True
        assert waits == [0.5] and report.answers == {"503": 1, "200": 1} and report.attempts == 2
        first, second = standin.requests
        assert first.body == second.body and first.headers["X-Dt-Signature"]
    finally:
        standin.close()


def test_an_answer_cut_short_is_retried_like_a_refused_connection():
    """A receiver process killed between an answer's headers and its body: not an acknowledgement."""
    listener = socket.create_server(("127.0.0.1", 0))
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n",  # then the connection drops
               b'HTTP/1.1 200 OK\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{"status":"accepted"}']

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        waits: list[float] = []
        sender = DtSimulator(f"http://127.0.0.1:{listener.getsockname()[1]}/dt/events", secret=SECRET,
                             sleep=waits.append)  # fmt: skip
        report = SendReport()
        assert sender.deliver(build_push_for_test(), report) is True
        assert report.answers == {"connection-error": 1, "200": 1} and len(waits) == 1
    finally:
        server.join(timeout=5)
        listener.close()


def test_gives_up_after_retry_for():
    standin = StandIn()
    try:
        standin.script("/dt/events", Reply(500))
        sender = DtSimulator(f"{standin.url}/dt/events", secret=SECRET, retry_for_s=2.0, sleep=lambda s: None)
        report = SendReport()
        assert sender.deliver(build_push_for_test(), report) is False
        assert len(report.gave_up) == 1 and report.attempts == 3  # waits 0.5 + 1.0, the next (2.0) is too long
    finally:
        standin.close()


def build_push_for_test() -> bytes:
    rng = random.Random(3)
    return build_push("temperature", fleet=Fleet.create(rng), event_id="e-retry", now=time.time(), rng=rng)


@pytest.mark.slow
def test_every_type_delivered_end_to_end_with_duplicates(redis: Redis, redis_server, worker_env, caplog):
    with gunicorn(redis_server.url) as (base, _):
        result = subprocess.run(
            [sys.executable, "-m", "connector.cli", "send-test-event", "--type", "all", "--count", "19",
             "--duplicate-rate", "0.5", "--seed", "7", "--url", f"{base}/dt/events", "--secret", SECRET],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("send-test-event: 19 events (")
    redeliveries = [line for line in lines if " redelivery 1: 200 duplicate" in line]
    assert redeliveries and f"({len(redeliveries)} delivered twice)" in lines[-1]
    ids = queued_ids(redis)
    assert len(ids) == len(set(ids)) == 19
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    with caplog.at_level(logging.INFO, logger="workers"):
        SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True, logging_level="ERROR")
    forwarded = [json.loads(r.getMessage()) for r in caplog.records if '"log":"forward"' in r.getMessage()]
    assert sorted(f["eventType"] for f in forwarded) == sorted(DT_EVENT_TYPES)


@pytest.mark.slow
def test_asymmetric_signature_end_to_end(redis: Redis, redis_server, tmp_path):
    port = free_port()
    discovery = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    receiver = {
        "DT_SIGNATURE_SECRET": "",
        "DT_ASYMMETRIC_SIGNATURE": "on",
        "DT_ORG_ID": "dt-connector-dev-org",
        "DT_OIDC_DISCOVERY_URL": discovery,
    }
    with gunicorn(redis_server.url, **receiver) as (base, _):
        result = subprocess.run(
            [sys.executable, "-m", "connector.cli", "send-test-event", "--asymmetric", "--oidc-port", str(port),
             "--count", "3", "--url", f"{base}/dt/events", "--state-dir", str(tmp_path), "--retry-for", "5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"DT_OIDC_DISCOVERY_URL={discovery}" in result.stdout
    assert len(queued_ids(redis)) == 3
    assert (tmp_path / "dev-es256.pem").stat().st_mode & 0o077 == 0  # private key kept private
