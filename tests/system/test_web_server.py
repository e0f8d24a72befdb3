"""The receiver under real gunicorn (the Procfile's settings), driven over HTTP.

Covers what only a multi-process server shows: concurrent deliveries of one event from
threads and from processes, a worker process killed mid-push, and Redis going away
and coming back.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests
from redis import Redis

from connector.cli.dev.embedded_redis import EmbeddedRedis, free_port
from tests.support.helpers import dt_body, queued_ids, sign
from tests.support.servers import gunicorn, post

pytestmark = pytest.mark.slow


@pytest.fixture
def server(redis: Redis, redis_server: EmbeddedRedis) -> Iterator[str]:
    with gunicorn(redis_server.url) as (base, _process):
        yield base


def test_concurrent_deliveries_from_threads_make_one_job(server: str, redis: Redis):
    body = dt_body(event_id="threaded1")
    barrier = threading.Barrier(16)
    statuses: list[str] = []

    def deliver() -> None:
        barrier.wait()
        response = post(server, body)
        statuses.append(f"{response.status_code} {response.json()['status']}")

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(statuses) == ["200 accepted"] + ["200 duplicate"] * 15
    assert queued_ids(redis) == ["log-threaded1"]


def _deliver_all(base: str, event_ids: list[str], seed: int) -> list[str]:
    order = list(event_ids)
    random.Random(seed).shuffle(order)
    session = requests.Session()
    outcomes = []
    for event_id in order:
        body = dt_body(event_id=event_id)
        response = session.post(f"{base}/dt/events", data=body, headers={"X-Dt-Signature": sign(body)}, timeout=10)
        outcomes.append(f"{response.status_code} {response.json()['status']}")
    return outcomes


def test_concurrent_deliveries_from_processes_make_one_job_each(server: str, redis: Redis):
    event_ids = [f"proc{n}" for n in range(60)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_deliver_all, [(server, event_ids, seed) for seed in range(4)])
    outcomes = [o for result in results for o in result]
    assert outcomes.count("200 accepted") == 60
    assert outcomes.count("200 duplicate") == 180
    assert sorted(queued_ids(redis)) == sorted(f"log-{e}" for e in event_ids)


def test_worker_killed_mid_push_loses_nothing(redis: Redis, redis_server: EmbeddedRedis):
    """SIGKILL the web workers while a push waits on Redis; DT's redelivery must get through."""
    body = dt_body(event_id="crash1")
    with gunicorn(redis_server.url, REDIS_TIMEOUT_S="5") as (base, master):
        outcome: dict[str, object] = {}

        def deliver() -> None:
            try:
                outcome["status"] = post(base, body).status_code
            except requests.RequestException as exc:
                outcome["error"] = type(exc).__name__

        redis.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        sender = threading.Thread(target=deliver)
        sender.start()
        try:
            time.sleep(0.5)  # the push is now inside the dedupe+enqueue call, held by the pause
            for worker in psutil.Process(master.pid).children():
                worker.send_signal(signal.SIGKILL)
        finally:
            redis.execute_command("CLIENT", "UNPAUSE")
        sender.join(10)
        assert "status" not in outcome, "a push was acknowledged by a killed worker"
        # DT redelivers; gunicorn has replaced the killed workers.
        deadline = time.monotonic() + 15
        while True:
            try:
                response = post(base, body)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 200
        assert queued_ids(redis) == ["log-crash1"]  # queued exactly once, whichever way it went


def test_redis_down_answers_503_then_recovers(redis: Redis):
    port = free_port()
    own = EmbeddedRedis(port=port).start()
    try:
        with gunicorn(own.url) as (base, _process):
            assert post(base, dt_body(event_id="before")).status_code == 200
            own.stop()
            response = post(base, dt_body(event_id="during"))
            assert response.status_code == 503
            assert response.json()["error"] == "redis-unavailable"
            assert int(response.headers["Retry-After"]) > 0
            ready = requests.get(f"{base}/readyz", timeout=5)
            assert ready.status_code == 503 and "Retry-After" in ready.headers
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            own = EmbeddedRedis(port=port).start()
            response = post(base, dt_body(event_id="during"))  # DT's retry
            assert response.status_code == 200
            assert queued_ids(Redis(port=port)) == ["log-during"]
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        own.stop()


def test_buffered_access_lines_are_flushed_when_the_server_stops(redis: Redis, redis_server: EmbeddedRedis, tmp_path):
    """Lines waiting in the buffer reach stdout on a graceful stop (SIGTERM), not lost."""
    log_path = tmp_path / "web.log"
    with (
        log_path.open("wb") as log_file,
        gunicorn(redis_server.url, log=log_file, ACCESS_LOG_FLUSH_MS="5000") as (
            base,
            _process,
        ),
    ):
        for n in range(5):
            assert post(base, dt_body(event_id=f"flush{n}")).status_code == 200
    logged = [line for line in log_path.read_text().splitlines() if '"log":"push"' in line]
    assert sorted(json.loads(line)["eventId"] for line in logged) == [f"flush{n}" for n in range(5)]


def test_chunked_upload_over_limit_is_413(redis: Redis, redis_server: EmbeddedRedis):
    with gunicorn(redis_server.url, MAX_BODY_BYTES="2048") as (base, _process):
        big = dt_body(labels={"name": "x" * 5000})
        response = requests.post(
            f"{base}/dt/events",
            data=iter([big[:3000], big[3000:]]),  # a generator body is sent chunked
            headers={"X-Dt-Signature": sign(big)},
            timeout=10,
        )
        assert response.status_code == 413
        at_limit = dt_body(event_id="fits")
        assert post(base, at_limit).status_code == 200
    assert queued_ids(redis) == ["log-fits"]
