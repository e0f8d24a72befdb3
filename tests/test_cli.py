"""The dt-connector command: `dev` as a user runs it, and `check-config`."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from connector.embedded_redis import free_port
from tests.conftest import dt_body, sign

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    drop = {"REDIS_URL", "DT_SIGNATURE_SECRET", "DT_ORG_ID", "DT_ASYMMETRIC_SIGNATURE", "DT_INSECURE_SKIP_VERIFY"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def test_dev_runs_the_whole_stack_and_stops_cleanly_on_ctrl_c(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "dev", "--port", str(port), "--state-dir", str(tmp_path / "state")],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()

    def wait_for(predicate, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if predicate(line):
                return line
        raise AssertionError("expected output did not appear")

    try:
        redis_line = wait_for(lambda line: "embedded Redis on" in line)
        redis_port = int(redis_line.split("redis://127.0.0.1:")[1].split("/")[0])
        ready = wait_for(lambda line: "Push DT events to" in line)
        assert f"http://127.0.0.1:{port}/dt/events" in ready
        secret = (tmp_path / "state" / "dev-secret").read_text().strip()
        assert secret not in ready
        body = dt_body(event_id="devloop1")
        response = requests.post(
            f"http://127.0.0.1:{port}/dt/events", data=body, headers={"X-Dt-Signature": sign(body, secret)}, timeout=5
        )
        assert response.status_code == 200
        forwarded = wait_for(lambda line: '"log":"forward"' in line)
        assert json.loads(forwarded)["eventId"] == "devloop1"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0
        wait_for(lambda line: "stopped" in line, timeout=5)
        with pytest.raises(RedisConnectionError):
            Redis(port=redis_port, socket_connect_timeout=0.5).ping()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
        process.stdout.close()  # type: ignore[union-attr]


def test_check_config_names_the_missing_variable():
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check-config"],
        env=clean_env(REDIS_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "DT_SIGNATURE_SECRET" in result.stderr


def test_check_config_ok_hides_secrets():
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check-config"],
        env=clean_env(REDIS_URL="redis://:hunter2-password@127.0.0.1:1/0", DT_SIGNATURE_SECRET="very-secret-value-x"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "very-secret-value-x" not in result.stdout and "hunter2-password" not in result.stdout
    assert "HS256 (1 secret(s))" in result.stdout
