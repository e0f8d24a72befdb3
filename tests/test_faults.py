"""Fault suite: nothing is lost while everything goes wrong at once.

10 000 signed events (plus 20 % delivered twice) are pushed by a DT-like sender that
retries every non-200 answer, through the real receiver (gunicorn) and the Procfile's
worker command to a MOOST stand-in, while:

(a) the worker is SIGKILLed three times (and started again, as Heroku restarts a dyno);
(b) Redis is restarted mid-run (the receiver answers 503, the sender retries);
(c) the stand-in answers 500 to 30 % of requests and stalls past the worker's timeout on
    5 % (dropping them unanswered and unprocessed).

Afterwards every unique event has reached the stand-in (checked by eventId), duplicates
at the stand-in are counted (target <= 0.1 %), and the queues are empty. One summary line
is printed. Run alone: ``pytest -m faults -s``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from bench.standin import LeanStandIn
from connector.embedded_redis import EmbeddedRedis, free_port
from connector.send_test import DtSimulator, SendReport
from connector.simulate import Fleet, build_push
from tests.conftest import SECRET, SUMMARY_LINES
from tests.connector.test_server import gunicorn

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EVENTS = 10_000
DUPLICATE_RATE = 0.2
SENDER_THREADS = 8
CUSTOMER = "656730be2bc9719e6e5ed51d"


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_group(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_nothing_is_lost_under_faults(tmp_path: Path):
    port = free_port()
    redis_server = EmbeddedRedis(port=port, persist_dir=tmp_path / "redis").start()
    standin = LeanStandIn(fail_rate=0.30, stall_rate=0.05, stall_s=2.5, seed=7)
    redis = Redis.from_url(redis_server.url)
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "DT_SIGNATURE_SECRET": SECRET,
        "MOOST_BASE_URL": standin.url,
        "MOOST_CLIENT_ID": "fault-suite",
        "MOOST_CLIENT_SECRET": "fault-suite-secret",
        "MOOST_CUSTOMER_ID": CUSTOMER,
        "WORKER_PROCESSES": "6",
        "JOB_TIMEOUT_S": "5",
        "FORWARD_TIMEOUT_S": "1",
        "RETRY_SCHEDULE_S": "1,1,1,2,2,2,3,3,3,3,3,3,3,3,3,3,3,3,3,3",
    }
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    started = time.monotonic()
    report = SendReport()
    lock = threading.Lock()
    sent = [0]
    try:
        with gunicorn(redis_server.url, **{k: v for k, v in env.items() if k.startswith(("MOOST_", "JOB_"))}) as (
            base,
            _,
        ):
            rng = random.Random(11)
            fleet = Fleet.create(rng)
            bodies = [
                build_push("temperature", fleet=fleet, event_id=f"fault{n:05d}", now=time.time(), rng=rng)
                for n in range(EVENTS)
            ]

            def counted(share: list[bytes]) -> Iterator[bytes]:
                for body in share:
                    yield body
                    with lock:
                        sent[0] += 1  # resumed for the next body: this one and its redelivery are done

            def send(share: list[bytes], seed: int) -> None:
                simulator = DtSimulator(f"{base}/dt/events", secret=SECRET, rng=random.Random(seed),
                                        retry_for_s=300, sleep=lambda s: time.sleep(min(s, 1.0)))  # fmt: skip
                local = simulator.send(counted(share), duplicate_rate=DUPLICATE_RATE)
                with lock:
                    report.add(local)

            senders = [
                threading.Thread(target=send, args=(bodies[i::SENDER_THREADS], i)) for i in range(SENDER_THREADS)
            ]
            for thread in senders:
                thread.start()

            def when_sent(share: float) -> None:
                while sent[0] < share * EVENTS and any(t.is_alive() for t in senders):
                    time.sleep(0.05)

            kills = 0
            for share in (0.15, 0.45, 0.75):  # (a) SIGKILL the worker dyno, then "Heroku" restarts it
                when_sent(share)
                kill_group(worker)
                kills += 1
                time.sleep(0.5)
                worker = start_worker(env, worker_log)
                if share == 0.45:  # (b) restart Redis while pushes are arriving
                    redis_server.stop()
                    time.sleep(1.0)
                    redis_server.start()
            for thread in senders:
                thread.join(timeout=600)
            assert not report.gave_up, f"the sender gave up on {len(report.gave_up)} events"
            assert len(report.acknowledged) == EVENTS

            # Every unique event must reach the stand-in; abandoned jobs come back through
            # RQ's registry cleaning (job timeout + 60 s, then the next cleaning).
            deadline = time.monotonic() + 420
            while standin.stats()["unique"] < EVENTS and time.monotonic() < deadline:
                time.sleep(2)
            stats = standin.stats()
            delivered = standin.keys()
            missing = sorted({f"fault{n:05d}" for n in range(EVENTS)} - delivered)
            while time.monotonic() < deadline and (redis.llen("rq:queue:dt-forward") or redis.zcard(
                    "rq:scheduled:dt-forward")):  # fmt: skip
                time.sleep(1)
            queued = redis.llen("rq:queue:dt-forward")
            scheduled = redis.zcard("rq:scheduled:dt-forward")
            failed = redis.zcard("rq:failed:dt-forward")
            dead = redis.zcard("dt:dead")
    finally:
        if worker.poll() is None:
            kill_group(worker)
        standin.close()
        redis_server.stop()
    elapsed = time.monotonic() - started
    duplicates = stats["duplicates"]
    summary = (
        f"FAULT SUITE: {EVENTS} unique events (+{report.duplicates_sent} redelivered by the sender, "
        f"{report.attempts} pushes, answers {dict(sorted(report.answers.items()))}); "
        f"{kills} worker SIGKILLs, 1 Redis restart, stand-in 30% 500 + 5% stalls; "
        f"delivered {len(delivered)}/{EVENTS}, missing {len(missing)}, duplicates at the stand-in {duplicates} "
        f"({duplicates / EVENTS:.3%}), stand-in requests {stats['requests']}; left: queued {queued}, "
        f"scheduled {scheduled}, failed {failed}, dead letters {dead}; {elapsed:.0f} s"
    )
    print("\n" + summary)
    SUMMARY_LINES.append(summary)
    assert missing == [], f"never delivered: {missing[:10]}"
    assert duplicates / EVENTS <= 0.001
    assert (queued, scheduled, failed, dead) == (0, 0, 0, 0)
    assert report.answers.get("503", 0) > 0  # the Redis restart was seen by the sender
