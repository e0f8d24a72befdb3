"""Worker benchmarks: how fast queued DT events reach a downstream.

Everything runs here: an ``EmbeddedRedis``, and a MOOST stand-in on 127.0.0.1 in its own
process (``bench.standin.LeanStandIn``: token endpoint plus ``POST /events/v1``,
keep-alive, counting eventIds). Events
are queued exactly as the receiver queues them (``connector.core.enqueue.Enqueuer``, one job
per event for destination ``moost``).

1. **Drain ratio** — one worker process as the Procfile runs it (``workers.run.runner``, default
   ``WORKER_THREADS``) forwarding N events to the stand-in, against RQ's own ``SimpleWorker``
   running N no-op jobs, in the same run. Target ≥ 0.8. Also shown: the same runner on one
   thread, and the runner running the no-op jobs.
2. **Latency hiding** — the stand-in answers every request after 50 ms; the Procfile's
   worker command (``dt-connector worker``, defaults) forwards N events. Target ≥ 200
   events/s within a Standard-1X dyno's 512 MB (PSS of the process tree) and within the
   connection budget (peak Redis connections by client name, sampled every 20 ms).
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
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

from bench.standin import LeanStandIn
from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core.enqueue import Enqueuer
from connector.core.jobspec import RESULT_TTL_S, JobTemplate

REPO = Path(__file__).resolve().parents[1]
CUSTOMER = "656730be2bc9719e6e5ed51d"
QUEUE = "dt-forward"
PROCESSES: int | None = None  # --processes; None = the Procfile default
THREADS: int | None = None  # --threads; None = the default


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
    if THREADS is not None:
        env["WORKER_THREADS"] = str(THREADS)
    return env


_RQ_SIMPLE_WORKER = """
import sys, time
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
q = Queue("dt-forward", connection=r, serializer=JSONSerializer)
n = q.count
t = time.perf_counter()
SimpleWorker([q], connection=r, serializer=JSONSerializer).work(burst=True, logging_level="ERROR")
print(n, time.perf_counter() - t)
"""

_RUNNER = """
import sys, time
from redis import Redis
from connector.core.settings import Settings
from workers.run.dyno import build_runner
settings = Settings.from_env()
n = Redis.from_url(settings.redis_url).llen("rq:queue:dt-forward")
runner = build_runner(settings, burst=True)
t = time.perf_counter()
runner.run()
print(n, time.perf_counter() - t)
"""


def jobs_per_second(script: str, env: dict[str, str], redis_url: str) -> float:
    """Jobs per second of one worker process draining the queue (``script`` prints count, seconds)."""
    out = subprocess.run(
        [sys.executable, "-c", script, redis_url], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) / float(out[1])


def drain_ratio(redis: Redis, url: str, standin: LeanStandIn, events: int, rounds: int) -> dict[str, float]:
    from rq import Queue
    from rq.serializers import JSONSerializer

    env = worker_env(url, standin)
    one_thread = {**env, "WORKER_THREADS": "1"}
    rates: dict[str, list[float]] = {"forward": [], "forward_1_thread": [], "noop_rq": [], "noop_runner": []}

    def noop_jobs() -> None:
        redis.flushall()
        queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
        for n in range(events):
            queue.enqueue("bench.drain.noop", n, result_ttl=RESULT_TTL_S)  # as the receiver queues jobs

    for r in range(rounds):
        noop_jobs()
        rates["noop_rq"].append(jobs_per_second(_RQ_SIMPLE_WORKER, env, url))
        noop_jobs()
        rates["noop_runner"].append(jobs_per_second(_RUNNER, env, url))
        redis.flushall()
        fill(redis, events, f"d{r}x")
        rates["forward"].append(jobs_per_second(_RUNNER, env, url))
        redis.flushall()
        fill(redis, events, f"d{r}y")
        rates["forward_1_thread"].append(jobs_per_second(_RUNNER, one_thread, url))
    med = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"drain ratio (medians of {rounds}): forward {med['forward']:.0f} ev/s (1 thread: "
        f"{med['forward_1_thread']:.0f}); RQ SimpleWorker no-op {med['noop_rq']:.0f} jobs/s (runner no-op: "
        f"{med['noop_runner']:.0f})"
    )
    print(f"  ratio {med['forward'] / med['noop_rq']:.3f} (target >= 0.8); on one thread "
          f"{med['forward_1_thread'] / med['noop_rq']:.3f}")  # fmt: skip
    return {**{f"{k}_per_s": v for k, v in med.items()}, "ratio": med["forward"] / med["noop_rq"]}


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
    connections = ConnectionSampler(url)
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
        connections.stop()
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
        "peak_redis_connections": connections.peak,
        "left_in_queue": int(redis.llen(f"rq:queue:{QUEUE}")),
    }


class ConnectionSampler:
    """Samples ``CLIENT LIST`` every 20 ms in a thread; ``peak`` is the most worker connections seen."""

    def __init__(self, url: str) -> None:
        self.peak = 0
        self._probe = Redis.from_url(url, client_name="bench-probe")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            names = [c.get("name", "") for c in self._probe.client_list()]
            self.peak = max(self.peak, sum(1 for n in names if n != "bench-probe"))
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ratio", "latency", "backlog"))
    parser.add_argument("--events", type=int, default=2000, help="events for the ratio and latency runs")
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--processes", type=int, help="WORKER_PROCESSES for the Procfile worker (default: its own)")
    parser.add_argument("--threads", type=int, help="WORKER_THREADS (default: its own)")
    args = parser.parse_args(argv)
    global PROCESSES, THREADS
    PROCESSES, THREADS = args.processes, args.threads
    results: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with EmbeddedRedis() as embedded:
        redis = Redis.from_url(embedded.url, client_name="bench-probe")  # not counted as the worker's
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
                f"{figures['peak_pss_mb']:.0f} MB (RSS {figures['peak_rss_mb']:.0f}), "
                f"{figures['peak_redis_connections']} Redis connections at peak "
                "(target >= 200 ev/s within 512 MB and the connection budget)"
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
