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

from connector.cli.dev.embedded_redis import free_port
from tests.support.helpers import dt_body, sign

pytestmark = pytest.mark.slow


STATE = ".dt-connector"
"""dev's default state directory name, so commands run in ``tmp_path`` find it as they would in a checkout."""


def run_cli(args: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    drop = {"REDIS_URL", "DT_SIGNATURE_SECRET", "DT_ORG_ID", "DT_ASYMMETRIC_SIGNATURE", "DT_INSECURE_SKIP_VERIFY"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def test_dev_runs_the_whole_stack_and_stops_cleanly_on_ctrl_c(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "dev", "--port", str(port), "--state-dir", str(tmp_path / STATE)],
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
        secret = (tmp_path / STATE / "dev-secret").read_text().strip()
        assert secret not in ready
        body = dt_body(event_id="devloop1")
        response = requests.post(
            f"http://127.0.0.1:{port}/dt/events", data=body, headers={"X-Dt-Signature": sign(body, secret)}, timeout=5
        )
        assert response.status_code == 200
        forwarded = wait_for(lambda line: '"log":"forward"' in line)
        assert json.loads(forwarded)["eventId"] == "devloop1"
        # A second terminal in the checkout: the operator commands find dev's Redis without REDIS_URL.
        second = run_cli(["failed", "list"], cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert f"using the Redis of `dt-connector dev` (redis://127.0.0.1:{redis_port}/0)" in second.stderr
        assert secret not in second.stdout + second.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0
        wait_for(lambda line: "stopped" in line, timeout=5)
        assert not (tmp_path / STATE / "redis-url").exists()
        assert run_cli(["failed", "list"], cwd=tmp_path).returncode == 2  # dev stopped: REDIS_URL is not set
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
        env=clean_env(
            REDIS_URL="redis://:hunter2-password@127.0.0.1:1/0",
            DT_SIGNATURE_SECRET="very-secret-value-x-0123456789abcdef",
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "very-secret-value-x" not in result.stdout and "hunter2-password" not in result.stdout
    assert "HS256 (1 secret(s))" in result.stdout


FAKE_NGROK = '''
import json, os, signal, sys, http.server, threading
args = sys.argv[1:]
port = 5000 if args[:2] == ["start", "dt-connector"] else int(args[1])
with open(os.environ["FAKE_NGROK_ARGS"], "w") as f:
    json.dump(args, f)
tunnels = {"tunnels": [
    {"name": "other", "public_url": "https://other.ngrok-free.app", "proto": "https", "config": {"addr": "http://localhost:9"}},
    {"name": "dt", "public_url": "https://abc123.ngrok-free.app", "proto": "https", "config": {"addr": f"http://localhost:{port}"}},
]}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        raw = json.dumps(tunnels if self.path == "/api/tunnels" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["FAKE_NGROK_API_PORT"])), H)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
server.serve_forever()
'''


def test_dev_with_ngrok_prints_the_public_url_and_points_the_connector_at_it(tmp_path: Path):
    from tests.support.dt_standin import DtStandIn

    dt = DtStandIn()
    dt.state.connectors["dc001"] = {"name": "projects/p/dataconnectors/dc001", "httpConfig": {"url": "https://old"}}
    fake = tmp_path / "ngrok"
    fake.write_text(f"#!{sys.executable}\n{FAKE_NGROK}")
    fake.chmod(0o755)
    api_port, port = free_port(), free_port()
    env = clean_env(
        NGROK_BIN=str(fake),
        NGROK_API_URL=f"http://127.0.0.1:{api_port}",
        FAKE_NGROK_API_PORT=str(api_port),
        FAKE_NGROK_ARGS=str(tmp_path / "args.json"),
        DT_CONNECTOR_ID="dc001",
        **dt.env(),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "dev", "--ngrok", "--port", str(port), "--state-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "public URL (register it as the Data Connector's URL): https://abc123.ngrok-free.app/dt/events" in text
        assert dt.state.connectors["dc001"]["httpConfig"]["url"] == "https://abc123.ngrok-free.app/dt/events"
        assert [changes for _, changes in dt.state.patches] == [
            {"httpConfig": {"url": "https://abc123.ngrok-free.app/dt/events"}}
        ]
        args = json.loads((tmp_path / "args.json").read_text())
        assert args[:2] == ["http", str(port)]
        config = Path(args[args.index("--config") + 1].split(",")[-1])
        assert config.name == "ngrok.yml" and config.is_file()  # the repository's, which exists
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{api_port}/api/tunnels", timeout=2)  # the agent was stopped too
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        dt.close()


def test_dev_with_ngrok_missing_says_how_to_get_it(tmp_path: Path):
    env = clean_env(NGROK_BIN="", PATH="/nonexistent")
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "dev", "--ngrok", "--port", str(free_port()), "--state-dir",
         str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ngrok is not installed" in result.stderr
