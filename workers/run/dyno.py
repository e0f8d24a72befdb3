"""The worker dyno (Procfile ``worker:``, ``dt-connector worker``): ``WORKER_PROCESSES`` processes
of ``WORKER_THREADS`` job threads each (``workers.run.runner``).

Threads hide the downstream's latency; a second process adds a second core, since each job
also costs a few ms of CPU under Python's GIL. Each process holds ``1 + WORK_CONNECTIONS`` Redis
connections whatever its load (one for the blocking dequeue, a bounded pool for the rest), so
the dyno's share of the Redis plan's connection limit is ``WORKER_PROCESSES x (1 + WORK_CONNECTIONS)``.

With more than one process, this process forks them and supervises: it passes SIGTERM and SIGINT
on (Heroku also signals every process of the dyno itself), restarts a process that dies unless
the dyno is stopping, and SIGKILLs whatever is still running ``STOP_GRACE_S`` + 3 s after a stop.
The mapping is validated before anything starts: an invalid one stops the worker at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from types import FrameType

from connector.core.logs import configure as configure_logging
from connector.core.redis_conn import connect_to
from connector.core.settings import Settings
from workers.jobs import Forwarder, install
from workers.run.runner import DEQUEUE_WAIT_S, STOP_GRACE_S, Runner
from workers.translate.mapping import checked_mapping

log = logging.getLogger("workers")

WORK_CONNECTIONS = 2
"""Redis connections a worker process shares among its job threads, scheduler and maintenance.
A job spends well under a millisecond of its time on Redis: 2 served 375 events/s at 50 ms
downstream latency and 261/s at none, no fewer than 3 did (bench.drain, 2026-12-04)."""

WORK_TIMEOUT_S = 10.0
"""Socket timeout of the shared connections (RQ's bookkeeping, metrics, dead letters)."""

RESTART_DELAY_S = 1.0
EXIT_CONFIG = 2
"""Exit status for a configuration error: the supervisor does not restart such a process."""


def redis_connections_per_dyno(settings: Settings) -> int:
    """The most Redis connections one worker dyno opens with ``settings``."""
    return settings.worker_processes * (1 + WORK_CONNECTIONS)


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    """Run the worker dyno until stopped (or, with ``burst``, until the queue is empty); exit status.

    Raises:
        ConfigError: the mapping is invalid (nothing was started), with check-config's message.
    """
    configure_logging()
    checked_mapping(settings.mapping_path)  # fail fast, before any process starts
    if settings.worker_processes == 1:
        return run_process(settings, burst=burst)
    return _supervise(settings, burst=burst)


def run_process(settings: Settings, *, burst: bool = False) -> int:
    """One worker process: its Redis clients, its forwarder, its runner, until stopped."""
    runner = build_runner(settings, burst=burst)
    try:
        return runner.run()
    finally:
        install(None)
        runner.redis.close()
        runner.dequeue_redis.close()


def build_runner(settings: Settings, *, burst: bool = False) -> Runner:
    """A runner with its own Redis clients and forwarder (installed for this process's jobs)."""
    work = connect_to(settings, timeout_s=WORK_TIMEOUT_S, max_connections=WORK_CONNECTIONS, client_name="dt-worker")
    dequeue = connect_to(
        settings,
        timeout_s=DEQUEUE_WAIT_S + WORK_TIMEOUT_S,  # BLMOVE blocks up to DEQUEUE_WAIT_S by design
        max_connections=1,
        client_name="dt-worker-dequeue",
    )
    forwarder = Forwarder.build(settings, work, concurrency=settings.worker_threads)
    install(forwarder)
    return Runner(
        queue_name=settings.queue_name,
        redis=work,
        dequeue_redis=dequeue,
        forwarder=forwarder,
        threads=settings.worker_threads,
        burst=burst,
    )


def _supervise(settings: Settings, *, burst: bool) -> int:
    """Fork ``settings.worker_processes`` processes and keep them running until a stop."""
    children: dict[int, int] = {}  # pid → slot
    stop_requested: list[float] = []
    failures = 0

    def spawn(slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: its own signal handling, then the runner
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = run_process(settings, burst=burst)
            except Exception:
                log.exception("worker process failed")
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = slot

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop_requested:
            stop_requested.append(time.monotonic())
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(settings.worker_processes):
            spawn(slot)
        log.info("worker: %d processes of %d job threads", settings.worker_processes, settings.worker_threads)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stop_requested and time.monotonic() > stop_requested[0] + STOP_GRACE_S + 3:
                    for straggler in list(children):
                        os.kill(straggler, signal.SIGKILL)
                time.sleep(0.1)
                continue
            if pid not in children:
                continue
            slot = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                failures += 1
            if stop_requested or burst:
                continue
            if code == EXIT_CONFIG:
                log.error("worker process exited with a configuration error; stopping the worker")
                on_signal(signal.SIGTERM, None)
                continue
            log.warning("worker process %d exited (status %d); starting another", pid, code)
            time.sleep(RESTART_DELAY_S)
            if not stop_requested:
                spawn(slot)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if failures == 0 or stop_requested else 1
