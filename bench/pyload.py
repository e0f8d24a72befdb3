"""Fallback load generator for ``bench.ingress`` when ``wrk`` is not installed.

``processes`` worker processes (spawned, so each has its own GIL) each drive
``connections / processes`` keep-alive ``http.client`` connections, one thread per
connection, for ``duration`` seconds after a common start barrier. Connection ``g`` of
``C`` sends pushes ``g, g + C, g + 2C, ...`` of one ``PushFactory``, so every request in
a run carries a distinct eventId and the supply never runs out. Every request that is
started is waited for, so unlike wrk nothing is left in flight when the run ends.

It is much weaker than wrk (a Python client spends more CPU per request than the server
under test), so absolute figures are lower; the ratios between targets stay meaningful.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import queue
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier

from bench.pushes import HS_HEADER, PATH, PushFactory

_CONNECT_TIMEOUT_S = 5.0


@dataclass
class _ConnStats:
    latencies_us: array[float] = field(default_factory=lambda: array("d"))
    status_2xx: int = 0
    status_other: int = 0
    socket_errors: int = 0
    issued: int = 0
    unanswered: int = 0


@dataclass
class LoadResult:
    """What one load run measured (all connections of all processes)."""

    duration_s: float
    latencies_us: list[float]
    status_2xx: int
    status_other: int
    socket_errors: int
    issued: int
    unanswered: int


def _drive(
    stats: _ConnStats,
    host: str,
    port: int,
    factory: PushFactory,
    first: int,
    stride: int,
    go: threading.Event,
    stop_at: list[float],
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=_CONNECT_TIMEOUT_S)
    index = first
    go.wait()
    deadline = stop_at[0]
    while time.monotonic() < deadline:
        body, token = factory.push(index)
        index += stride
        headers = {"Content-Type": "application/json", HS_HEADER: token}
        stats.issued += 1
        started = time.perf_counter()
        try:
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            stats.socket_errors += 1
            stats.unanswered += 1  # the server may still have processed it
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=_CONNECT_TIMEOUT_S)
            continue
        stats.latencies_us.append((time.perf_counter() - started) * 1e6)
        if 200 <= response.status < 300:
            stats.status_2xx += 1
        else:
            stats.status_other += 1
    conn.close()


def _process_main(
    proc_index: int,
    n_procs: int,
    conns_per_proc: int,
    host: str,
    port: int,
    secret: str,
    tag: str,
    iat: float,
    duration_s: float,
    barrier: Barrier,
    out: mp.Queue[tuple[bytes, list[int], float, float]],
) -> None:
    factory = PushFactory(secret, tag=tag, now=iat)
    total_conns = n_procs * conns_per_proc
    go = threading.Event()
    stop_at = [0.0]
    all_stats = [_ConnStats() for _ in range(conns_per_proc)]
    threads = [
        threading.Thread(
            target=_drive,
            args=(stats, host, port, factory, proc_index * conns_per_proc + k, total_conns, go, stop_at),
            daemon=True,
        )
        for k, stats in enumerate(all_stats)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.time()
    stop_at[0] = time.monotonic() + duration_s
    go.set()
    for thread in threads:
        thread.join()
    ended = time.time()
    latencies = array("d")
    for stats in all_stats:
        latencies.extend(stats.latencies_us)
    counts = [
        sum(s.status_2xx for s in all_stats),
        sum(s.status_other for s in all_stats),
        sum(s.socket_errors for s in all_stats),
        sum(s.issued for s in all_stats),
        sum(s.unanswered for s in all_stats),
    ]
    out.put((latencies.tobytes(), counts, began, ended))


def run_load(
    *,
    host: str,
    port: int,
    factory: PushFactory,
    duration_s: float,
    connections: int,
    processes: int,
) -> LoadResult:
    """Drive ``http://host:port/dt/events`` for ``duration_s``; returns the merged figures."""
    processes = max(1, min(processes, connections))
    conns_per_proc = max(1, connections // processes)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out: mp.Queue[tuple[bytes, list[int], float, float]] = ctx.Queue()
    workers = [
        ctx.Process(
            target=_process_main,
            args=(
                p, processes, conns_per_proc, host, port, factory.secret, factory.tag, factory.iat,
                duration_s, barrier, out,
            ),
            daemon=True,
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    counts = [0, 0, 0, 0, 0]
    began, ended = float("inf"), 0.0
    try:
        for _ in workers:
            raw, part, start, end = out.get(timeout=duration_s + 60)
            chunk = array("d")
            chunk.frombytes(raw)
            latencies.extend(chunk)
            counts = [a + b for a, b in zip(counts, part, strict=True)]
            began, ended = min(began, start), max(ended, end)
    except queue.Empty:
        raise RuntimeError("python load generator: a worker process did not report") from None
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return LoadResult(
        duration_s=max(ended - began, 1e-9),
        latencies_us=latencies,
        status_2xx=counts[0],
        status_other=counts[1],
        socket_errors=counts[2],
        issued=counts[3],
        unanswered=counts[4],
    )
