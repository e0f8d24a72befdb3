"""The receiver's jobs run in every mode RQ has, in a real terminal: RQ colours its log lines
when stdout is a TTY and reads fields (``description``, ``origin``, …) that a pipe never shows.

Each mode runs as its own process on a pseudo-terminal (``pty``), the way a user starts it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.web.app import create_app
from tests.support.helpers import ROOT, SECRET, dt_body, make_settings, push

pytestmark = pytest.mark.slow


BIN = Path(sys.executable).parent


def run_in_terminal(
    argv: list[str], env: dict[str, str], *, timeout: float = 60, finished: str | None = None
) -> tuple[int | None, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr; (exit status, output).

    With ``finished``, a line that says the work is done: a process still running 3 s after it
    is stopped and its status is None (RQ's own workers can linger up to a minute on exit, joining
    their pub/sub thread: rq/rq#1613).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(ROOT)
        os.execve(argv[0], argv, env)  # noqa: S606
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if finished and finished.encode() in output:
                deadline = min(deadline, time.monotonic() + 3)
                finished = None
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(fd)
    waited, status = os.waitpid(pid, os.WNOHANG)
    if waited == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None, output.decode(errors="replace")
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


MODES = {
    "rq worker (fork per job)": ["rq", "worker", "--burst", "-S", "json"],
    "rq worker, SimpleWorker": ["rq", "worker", "--burst", "-S", "json", "-w", "rq.worker.SimpleWorker"],
    "rq worker-pool": ["rq", "worker-pool", "--burst", "-S", "json", "-n", "2"],
    "dt-connector worker --burst": ["dt-connector", "worker", "--burst"],
}
FINISHED = {"rq worker": "done, quitting", "rq worker-pool": "All workers stopped, exiting"}
"""What RQ's own modes print when their work is done (they may then linger: rq/rq#1613)."""


@pytest.mark.parametrize("mode", list(MODES))
def test_the_receivers_jobs_run_in_every_rq_mode_on_a_terminal(mode: str, redis: Redis, redis_server: EmbeddedRedis):
    client = create_app(make_settings(redis_server.url), configure_logs=False).test_client()
    for event_id in ("tty1", "tty2"):
        assert push(client, dt_body(event_id=event_id)).status_code == 200
    program, *arguments = MODES[mode]
    argv = [str(BIN / program), *arguments]
    if program == "rq":
        argv += ["--url", redis_server.url, "dt-forward"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MOOST_", "SPOT_", "CONNECTOR_", "WORKER_"))},
        "REDIS_URL": redis_server.url,
        "DT_SIGNATURE_SECRET": SECRET,
        "TERM": "xterm-256color",
        "WORKER_PROCESSES": "2",
        "WORKER_THREADS": "2",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if program == "rq":
        status, output = run_in_terminal(argv, env, finished=FINISHED[" ".join(MODES[mode][:2])])
        assert status in (0, None), output
    else:
        status, output = run_in_terminal(argv, env, timeout=20)
        assert status == 0, output  # ours exits as soon as the queue is empty
    assert "Traceback" not in output and "Error" not in output, output
    assert redis.llen("rq:queue:dt-forward") == 0 and redis.llen("rq:queue:dt-forward:intermediate") == 0
    assert redis.zcard("rq:failed:dt-forward") == 0
    # Both jobs ran and delivered (a durable counter: the job hashes expire RESULT_TTL_S after finishing,
    # which a pool that lingers on exit on a loaded machine can outlast; seen in a CI run).
    assert redis.hget("dt:metrics:delivery:log", "delivered") == b"2"
    assert {redis.hget(f"rq:job:log-{e}", "status") for e in ("tty1", "tty2")} <= {b"finished", None}
    if program == "rq":
        assert "\x1b[" in output  # RQ coloured its lines: the terminal code path ran
    else:
        assert '"eventId":"tty1"' in output  # the log destination printed the event


def test_dt_connector_dev_in_a_terminal_forwards_a_test_event(tmp_path: Path):
    """What a new user does first: `dt-connector dev` in a terminal, then one send-test-event."""
    import signal
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = tmp_path / "state"
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("MOOST_", "SPOT_", "CONNECTOR_", "WORKER_", "DT_"))
        },
        "TERM": "xterm-256color",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("REDIS_URL", None)
    dev = str(BIN / "dt-connector")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execve(dev, [dev, "dev", "--port", str(port), "--state-dir", str(state)], env)  # noqa: S606
    output = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output:
            assert time.monotonic() < deadline, f"no {marker!r} in:\n{output.decode(errors='replace')}"
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    break

    try:
        read_until(b"Ctrl-C stops everything", 60)
        sent = subprocess.run(
            [dev, "send-test-event", "--count", "1", "--url", f"http://127.0.0.1:{port}/dt/events",
             "--state-dir", str(state)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        read_until(b'"outcome":"delivered"', 30)
        os.write(fd, b"\x03")  # Ctrl-C, typed in the terminal
        read_until(b"dt-connector dev: stopped.", 40)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert "Traceback" not in text, text
    assert '"destination":"log"' in text
