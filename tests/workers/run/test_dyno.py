"""The worker dyno as Heroku runs it (``dt-connector worker``, defaults), from outside: SIGTERM with
jobs in flight, its Redis connections beside a web dyno's, a process that dies, a broken mapping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis

from bench.standin import LeanStandIn
from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core.settings import Settings
from connector.web.app import create_app
from connector.web.ops.metrics import collect
from tests.support.helpers import SECRET, push, sign
from tests.support.samples import CUSTOMER, push_of
from tests.support.servers import gunicorn
from tests.support.standins import Reply, StandIn
from workers.translate.mapping import DEFAULT_MAPPING_PATH

pytestmark = pytest.mark.slow

MINI_PLAN_CONNECTIONS = 20
"""Heroku Key-Value Store mini, the plan the Heroku Button provisions."""


def dyno_env(redis_url: str, moost_url: str, **extra: str) -> dict[str, str]:
    """The worker dyno's environment: defaults for everything but Redis and MOOST."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "MOOST_", "SPOT_", "CONNECTOR_"))}
    env.update(
        REDIS_URL=redis_url,
        DT_SIGNATURE_SECRET=SECRET,
        MOOST_BASE_URL=moost_url,
        MOOST_CLIENT_ID="c",
        MOOST_CLIENT_SECRET="dyno-test-secret",
        MOOST_CUSTOMER_ID=CUSTOMER,
        **extra,
    )
    return env


def queue_events(env: dict[str, str], count: int, tag: str) -> None:
    client = create_app(Settings.from_env(env), configure_logs=False).test_client()
    for n in range(count):
        body = json.dumps(push_of("temperature", event_id=f"{tag}{n}"), separators=(",", ":")).encode()
        assert push(client, body).status_code == 200


def start_dyno(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "connector.cli", "worker", *args]
    # start_new_session: a process group of its own, as a dyno's processes are.
    if log is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def own_redis() -> Iterator[tuple[EmbeddedRedis, Redis]]:
    """A Redis server of the test's own: nothing another test started can touch its queue."""
    server = EmbeddedRedis().start()
    client = Redis.from_url(server.url)
    yield server, client
    client.close()
    server.stop()


@pytest.mark.parametrize(
    "forward_timeout", [None, "25"], ids=["defaults", "FORWARD_TIMEOUT_S=25: the grace cuts requests"]
)
def test_sigterm_with_jobs_in_flight_exits_well_within_herokus_30_s(
    forward_timeout: str | None, own_redis: tuple[EmbeddedRedis, Redis], capsys, tmp_path: Path
):
    """Heroku sends SIGTERM to every process of the dyno, then SIGKILL 30 s later. With every job
    thread waiting on a downstream that stalls for a minute, the dyno exits within 25 s and the
    jobs in flight are scheduled for retry, not lost."""
    redis_server, redis = own_redis
    standin = StandIn()
    standin.script("/auth/token/v1", Reply(200, {"access_token": "t", "expires_in": 3600}))
    standin.script("/events/v1", Reply(201, delay_s=60))
    extra = {"FORWARD_TIMEOUT_S": forward_timeout} if forward_timeout else {}
    env = dyno_env(redis_server.url, standin.url, **extra)
    settings = Settings.from_env(env)
    concurrency = settings.worker_processes * settings.worker_threads
    try:
        queue_events(env, concurrency + 20, "term")
        log = tmp_path / "worker.log"
        dyno = start_dyno(env, log=log)
        in_flight = lambda: len([s for s in standin.requests if s.path == "/events/v1"])  # noqa: E731
        wait_for(lambda: in_flight() >= concurrency, 30, f"{concurrency} jobs in flight")
        signalled = time.monotonic()
        os.killpg(dyno.pid, signal.SIGTERM)  # as Heroku does: every process of the dyno
        dyno.wait(timeout=40)
        took = time.monotonic() - signalled
    finally:
        standin.close()
    with capsys.disabled():
        print(f"\nSIGTERM with {in_flight()} jobs in flight ({concurrency} job threads): dyno exited in {took:.1f} s")
    jobs = collect(redis, queue_name="dt-forward", destinations=("moost",), now=time.time()).jobs
    assert took < 25, log.read_text()[-5000:]
    assert jobs.scheduled >= concurrency, (jobs, log.read_text()[-5000:])  # the jobs in flight will be retried
    assert (jobs.started, jobs.intermediate, jobs.failed, jobs.unaccounted) == (0, 0, 0, 0)
    assert jobs.created == jobs.pending == concurrency + 20


def test_redis_connections_of_a_web_and_a_worker_dyno_fit_the_mini_plan(tmp_path: Path, capsys):
    """The Heroku Button's formation (one web dyno, one worker dyno, defaults) under load, against
    the plan it provisions: at most 80 % of its 20 connections, whatever the load. (A Redis server
    of its own, so that no other test's clients are counted.)"""
    redis_server = EmbeddedRedis().start()
    standin = LeanStandIn(delay_s=0.05)
    env = dyno_env(redis_server.url, standin.url)
    peaks: Counter[str] = Counter()
    stop = threading.Event()
    probe = Redis.from_url(redis_server.url, client_name="dt-test-probe")

    def sample() -> None:
        while not stop.is_set():
            names = Counter(c.get("name") or "unnamed" for c in probe.client_list())
            names.pop("dt-test-probe", None)
            names["TOTAL"] = sum(names.values())
            for name, count in names.items():
                peaks[name] = max(peaks[name], count)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    dyno = start_dyno(env)
    events = 1500
    try:
        sampler.start()
        with gunicorn(redis_server.url, **{k: v for k, v in env.items() if k.startswith("MOOST_")}) as (base, _):
            bodies = [json.dumps(push_of("temperature", event_id=f"conn{n}")).encode() for n in range(events)]

            def send(share: list[bytes]) -> None:
                session = requests.Session()
                for body in share:
                    answer = session.post(
                        f"{base}/dt/events",
                        data=body,
                        timeout=30,
                        headers={"X-Dt-Signature": sign(body), "Content-Type": "application/json"},
                    )
                    assert answer.status_code == 200  # fmt: skip

            senders = [threading.Thread(target=send, args=(bodies[i::16],)) for i in range(16)]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join(timeout=300)
            wait_for(lambda: standin.stats()["unique"] >= events, 120, "every event delivered")
    finally:
        stop.set()
        sampler.join(timeout=5)
        os.killpg(dyno.pid, signal.SIGTERM)
        dyno.wait(timeout=40)
        standin.close()
        probe.close()
        redis_server.stop()
    web, worker = peaks["dt-web"], peaks["dt-worker"] + peaks["dt-worker-dequeue"]
    with capsys.disabled():
        print(f"\nRedis connections at defaults, {events} pushes from 16 clients, 50 ms downstream: "
              f"web dyno {web} (peak), worker dyno {worker} ({peaks['dt-worker']} shared + "
              f"{peaks['dt-worker-dequeue']} dequeue), together {peaks['TOTAL']} of "
              f"{MINI_PLAN_CONNECTIONS}")  # fmt: skip
    # (A connection shows as unnamed for the moment before its CLIENT SETNAME; TOTAL counts those too.)
    assert web <= 2 * 4  # WEB_CONCURRENCY x WEB_REDIS_CONNECTIONS
    assert worker <= 2 * (1 + 2)  # WORKER_PROCESSES x (dequeue + shared pool)
    assert peaks["TOTAL"] <= 0.8 * MINI_PLAN_CONNECTIONS


def test_a_worker_process_that_dies_is_replaced(own_redis: tuple[EmbeddedRedis, Redis], tmp_path: Path):
    redis_server, _ = own_redis
    standin = LeanStandIn()
    env = dyno_env(redis_server.url, standin.url)
    dyno = start_dyno(env, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: len(psutil.Process(dyno.pid).children()) == 2, 20, "two worker processes")
        victim = psutil.Process(dyno.pid).children()[0]
        victim.kill()
        wait_for(lambda: victim.pid not in [p.pid for p in psutil.Process(dyno.pid).children()], 10, "the death")
        wait_for(lambda: len(psutil.Process(dyno.pid).children()) == 2, 20, "a replacement")
        queue_events(env, 20, "phoenix")
        wait_for(lambda: standin.stats()["unique"] == 20, 30, "the events delivered")
    finally:
        os.killpg(dyno.pid, signal.SIGTERM)
        dyno.wait(timeout=40)
        standin.close()
    assert "starting another" in (tmp_path / "worker.log").read_text()


@pytest.fixture
def broken_mapping(tmp_path: Path) -> Iterator[Path]:
    """The shipped mapping with one typo'd MOOST type: what a user's edit typically breaks."""
    path = tmp_path / "mapping.toml"
    path.write_text(DEFAULT_MAPPING_PATH.read_text().replace('type = "TEMPERATURE"', 'type = "TEMPERATUR"', 1))
    yield path


@pytest.mark.parametrize("command", [["worker"], ["web", "--bind", "127.0.0.1:0"], ["check-config"]])
def test_an_invalid_mapping_stops_web_and_worker_at_start(
    command: list[str], broken_mapping: Path, redis_server: EmbeddedRedis
):
    env = {**dyno_env(redis_server.url, "http://127.0.0.1:9"), "CONNECTOR_MAPPING": str(broken_mapping)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("dt-connector: configuration error: CONNECTOR_MAPPING:"), result.stderr
    assert time.monotonic() - started < 30
