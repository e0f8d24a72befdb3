"""Worker benchmarks: how fast queued DT events reach a downstream.

Everything runs here: an ``EmbeddedRedis``, and a MOOST stand-in on 127.0.0.1 in its own
process (``bench.standin.LeanStandIn``: token endpoint plus ``POST /events/v1``,
keep-alive, counting eventIds). Events
are queued exactly as the receiver queues them (``connector.enqueue.Enqueuer``, one job
per event for destination ``moost``).

1. **Drain ratio** — one ``SimpleWorker`` process (the class the worker pool runs)
   forwarding N events to the stand-in, against the same worker class running N no-op
   jobs, in the same run. Target ≥ 0.8.
2. **Latency hiding** — the stand-in answers every request after 50 ms; the Procfile's
   worker command (``dt-connector worker``, default ``WORKER_PROCESSES``) forwards N
   events. Target ≥ 200 events/s within a Standard-1X dyno's 512 MB (RSS of the whole
   process tree is sampled; shared pages are counted once per process, so it overstates).
3. **Backlog** — 50,000 queued events (what DT redelivers after a long outage) drained
   by the Procfile worker: time, events/s, and every eventId checked at the stand-in.

    python -m bench.drain                       # all three
    python -m bench.drain --only latency --events 3000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

from bench.standin import LeanStandIn
from connector.embedded_redis import EmbeddedRedis
from connector.enqueue import Enqueuer
from connector.rqjob import RESULT_TTL_S, JobTemplate

REPO = Path(__file__).resolve().parents[1]
CUSTOMER = "656730be2bc9719e6e5ed51d"
QUEUE = "dt-forward"
PROCESSES: int | None = None  # --processes; None = the Procfile default


def noop(*args: Any) -> str:
    """The no-op job of the drain-ratio baseline."""
    return "ok"


def push_body(n: int, tag: str) -> bytes:
    event_id = f"{tag}{n:07d}"
    doc = {
        "event": {
            "eventId": event_id,
            "targetName": "projects/c0mf2gqk0000000/devices/emuc0mhb0000001",
            "eventType": "temperature",
            "data": {
                "temperature": {
                    "value": round(18 + (n % 700) / 100, 2),
                    "updateTime": "2026-11-23T10:00:00.123456Z",
                    "samples": [{"value": 18.5, "sampleTime": "2026-11-23T10:00:00.123456Z"}],
                    "isBackfilled": False,
                }
            },
            "timestamp": "2026-11-23T10:00:00.223456Z",
        },
        "labels": {"name": f"Sensor {n % 50}", "moost_building": "site-42"},
        "metadata": {
            "deviceId": "emuc0mhb0000001",
            "projectId": "c0mf2gqk0000000",
            "deviceType": "temperature",
            "productNumber": "",
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def fill(redis: Redis, count: int, tag: str) -> None:
    enqueuer = Enqueuer(
        redis,
        queue_name=QUEUE,
        destinations=("moost",),
        dedupe_ttl_s=3600,
        template=JobTemplate.from_rq(queue_name=QUEUE, timeout_s=20),
    )
    now = time.time()
    for n in range(count):
        enqueuer.enqueue(f"{tag}{n:07d}", push_body(n, tag), received_at=now)


def worker_env(redis_url: str, standin: LeanStandIn, processes: int | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DT_SIGNATURE_SECRET": "bench-secret-0123456789abcdef0123456789",
        "MOOST_BASE_URL": standin.url,
        "MOOST_CLIENT_ID": "bench",
        "MOOST_CLIENT_SECRET": "bench-secret",
        "MOOST_CUSTOMER_ID": CUSTOMER,
        "PYTHONPATH": str(REPO),
    }
    if processes is not None:
        env["WORKER_PROCESSES"] = str(processes)
    return env


_SIMPLE_WORKER = """
import sys, time
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from workers.worker import ConnectorWorker  # the class the Procfile worker's pool runs
r = Redis.from_url(sys.argv[1])
q = Queue("dt-forward", connection=r, serializer=JSONSerializer)
n = q.count
t = time.perf_counter()
ConnectorWorker([q], connection=r, serializer=JSONSerializer).work(burst=True, logging_level="ERROR")
print(n, time.perf_counter() - t)
"""


def run_simple_worker(env: dict[str, str], redis_url: str) -> float:
    """Jobs per second of one SimpleWorker process draining the queue."""
    out = subprocess.run(
        [sys.executable, "-c", _SIMPLE_WORKER, redis_url], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) / float(out[1])


def drain_ratio(redis: Redis, url: str, standin: LeanStandIn, events: int, rounds: int) -> dict[str, float]:
    from rq import Queue
    from rq.serializers import JSONSerializer

    env = worker_env(url, standin)
    forward_rates, noop_rates = [], []
    for r in range(rounds):
        redis.flushall()
        queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
        for n in range(events):
            queue.enqueue("bench.drain.noop", n, result_ttl=RESULT_TTL_S)  # as the receiver queues jobs
        noop_rates.append(run_simple_worker(env, url))
        redis.flushall()
        fill(redis, events, f"d{r}x")
        forward_rates.append(run_simple_worker(env, url))
    forward, baseline = statistics.median(forward_rates), statistics.median(noop_rates)
    print(f"drain ratio: forward {forward:.0f} ev/s, no-op {baseline:.0f} jobs/s (medians of {rounds})")
    print(f"  ratio {forward / baseline:.3f} (target >= 0.8)")
    return {"forward_eps": forward, "noop_jps": baseline, "ratio": forward / baseline}


def run_procfile_worker(redis: Redis, url: str, standin: LeanStandIn, events: int, tag: str) -> dict[str, float]:
    """Start ``dt-connector worker``, wait until ``events`` reached the stand-in, stop it."""
    fill(redis, events, tag)
    before = standin.stats()
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "worker"],
        env=worker_env(url, standin, PROCESSES),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak_rss = peak_pss = 0
    first_delivery: float | None = None
    try:
        while True:
            stats = standin.stats()
            if first_delivery is None and stats["unique"] > before["unique"]:
                first_delivery = time.monotonic()
            if stats["unique"] - before["unique"] >= events:
                break
            if time.monotonic() - started > 900:
                raise RuntimeError(f"only {stats['unique'] - before['unique']} of {events} delivered after 900 s")
            try:
                tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
                peak_rss = max(peak_rss, sum(p.memory_info().rss for p in tree))
                # PSS splits pages shared after fork between the processes: the dyno's real footprint.
                peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.1)
        finished = time.monotonic()
        elapsed = finished - started  # includes the workers' start-up
        steady = finished - (first_delivery or started)
    finally:
        worker.terminate()
        worker.wait(timeout=40)
    stats = standin.stats()
    unique = stats["unique"] - before["unique"]
    return {
        "events": events,
        "delivered_requests": stats["requests"] - before["requests"],
        "unique_event_ids": unique,
        "seconds": elapsed,
        "events_per_s": unique / elapsed,
        "steady_events_per_s": unique / steady if steady > 0 else 0.0,
        "peak_rss_mb": peak_rss / 2**20,
        "peak_pss_mb": peak_pss / 2**20,
        "left_in_queue": int(redis.llen(f"rq:queue:{QUEUE}")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ratio", "latency", "backlog"))
    parser.add_argument("--events", type=int, default=2000, help="events for the ratio and latency runs")
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--processes", type=int, help="WORKER_PROCESSES for the Procfile worker (default: its own)")
    args = parser.parse_args(argv)
    global PROCESSES
    PROCESSES = args.processes
    results: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with EmbeddedRedis() as embedded:
        redis = Redis.from_url(embedded.url)
        if args.only in (None, "ratio"):
            standin = LeanStandIn()
            try:
                results["drain_ratio"] = drain_ratio(redis, embedded.url, standin, args.events, args.rounds)
            finally:
                standin.close()
        if args.only in (None, "latency"):
            redis.flushall()
            standin = LeanStandIn(delay_s=0.05)
            try:
                figures = run_procfile_worker(redis, embedded.url, standin, args.events, "lat")
            finally:
                standin.close()
            results["latency_hiding"] = figures
            print(
                f"latency hiding (50 ms downstream): {figures['steady_events_per_s']:.0f} events/s from first "
                f"delivery ({figures['events_per_s']:.0f} including start-up), "
                f"{figures['unique_event_ids']}/{figures['events']} delivered, peak PSS "
                f"{figures['peak_pss_mb']:.0f} MB (RSS {figures['peak_rss_mb']:.0f}) "
                "(target >= 200 ev/s within 512 MB)"
            )
        if args.only in (None, "backlog"):
            redis.flushall()
            standin = LeanStandIn()
            try:
                figures = run_procfile_worker(redis, embedded.url, standin, args.backlog, "bk")
            finally:
                standin.close()
            lost = args.backlog - figures["unique_event_ids"]
            results["backlog"] = figures | {"lost": lost}
            print(
                f"backlog: {args.backlog} events in {figures['seconds']:.1f} s = "
                f"{figures['events_per_s']:.0f} events/s, lost {lost}, "
                f"duplicates at the stand-in {figures['delivered_requests'] - figures['unique_event_ids']}, "
                f"peak PSS {figures['peak_pss_mb']:.0f} MB"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
