"""Fallback load generator for ``bench.ingress`` when ``wrk`` is not installed.

``processes`` worker processes (spawned, so each has its own GIL) each drive
``connections / processes`` keep-alive ``http.client`` connections, one thread per
connection, for ``duration`` seconds after a common start barrier. Connection ``g`` of
``C`` sends pushes ``g, g + C, g + 2C, ...`` of one ``PushFactory``, so every request in
a run carries a distinct eventId and the supply never runs out. Every request that is
started is waited for, so unlike wrk nothing is left in flight when the run ends.
All connections are opened before the clock starts, so the caller can check how they
landed on the server's workers and have them reopened (``accept``).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier

from bench.pushes import HS_HEADER, PATH, PushFactory

_TIMEOUT_S = 5.0
_BARRIER_TIMEOUT_S = 30.0


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
    attempts: int
    """How many times the connections were opened (``accept`` refused all but the last)."""


def _connect(host: str, port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(host, port, timeout=_TIMEOUT_S)
    conn.connect()
    return conn


def _drive(
    stats: _ConnStats,
    conn: http.client.HTTPConnection,
    factory: PushFactory,
    first: int,
    stride: int,
    deadline: float,
) -> None:
    index = first
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
            conn.close()  # the next request reconnects
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
    go: Synchronized[int],
    out: mp.Queue[tuple[bytes, list[int], float, float]],
) -> None:
    factory = PushFactory(secret, tag=tag, now=iat)
    total_conns = n_procs * conns_per_proc
    while True:  # connect, let the parent look at the spread, reconnect if it says so
        conns = [_connect(host, port) for _ in range(conns_per_proc)]
        barrier.wait()
        barrier.wait()
        if go.value:
            break
        for conn in conns:
            conn.close()
    began = time.time()
    deadline = time.monotonic() + duration_s
    all_stats = [_ConnStats() for _ in conns]
    threads = [
        threading.Thread(
            target=_drive,
            args=(stats, conn, factory, proc_index * conns_per_proc + k, total_conns, deadline),
            daemon=True,
        )
        for k, (stats, conn) in enumerate(zip(all_stats, conns, strict=True))
    ]
    for thread in threads:
        thread.start()
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
    accept: Callable[[], bool] | None = None,
    max_attempts: int = 8,
) -> LoadResult:
    """Drive ``http://host:port/dt/events`` for ``duration_s``; returns the merged figures.

    All connections are opened first; then ``accept()`` (if given) decides whether to go
    or to reconnect all of them and ask again (at most ``max_attempts`` times in all).
    """
    processes = max(1, min(processes, connections))
    conns_per_proc = max(1, connections // processes)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    go = ctx.Value("i", 0)
    out: mp.Queue[tuple[bytes, list[int], float, float]] = ctx.Queue()
    workers = [
        ctx.Process(
            target=_process_main,
            args=(
                p,
                processes,
                conns_per_proc,
                host,
                port,
                factory.secret,
                factory.tag,
                factory.iat,
                duration_s,
                barrier,
                go,
                out,
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
    attempts = 0
    try:
        while True:
            attempts += 1
            barrier.wait(timeout=_BARRIER_TIMEOUT_S)  # every connection is open
            go.value = int(accept is None or attempts >= max_attempts or accept())
            barrier.wait(timeout=_BARRIER_TIMEOUT_S)
            if go.value:
                break
        for _ in workers:
            raw, part, start, end = out.get(timeout=duration_s + 60)
            chunk = array("d")
            chunk.frombytes(raw)
            latencies.extend(chunk)
            counts = [a + b for a, b in zip(counts, part, strict=True)]
            began, ended = min(began, start), max(ended, end)
    except (queue.Empty, threading.BrokenBarrierError):
        raise RuntimeError("python load generator: a worker process failed") from None
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
        attempts=attempts,
    )
