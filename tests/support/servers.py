"""The receiver under real gunicorn, on a free port, for tests that need a real HTTP server."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import requests

from connector.cli.dev.embedded_redis import free_port
from connector.cli.main import web_command
from tests.support.helpers import SECRET, sign


@contextmanager
def gunicorn(
    redis_url: str, *, log: IO[bytes] | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the receiver with the project's gunicorn settings on a free port.

    Its output goes to ``log`` when given, else nowhere. Leaving the block stops it (SIGTERM).
    """
    port = free_port()
    environ = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DT_SIGNATURE_SECRET": SECRET,
        "WEB_CONCURRENCY": "2",
        "WEB_REDIS_CONNECTIONS": "4",
        "REDIS_TIMEOUT_S": "1",
        **env,
    }
    process = subprocess.Popen(
        web_command(f"127.0.0.1:{port}"),
        env=environ,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, "gunicorn exited during start-up"
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(base: str, body: bytes, *, timeout: float = 10) -> requests.Response:
    return requests.post(
        f"{base}/dt/events",
        data=body,
        headers={"X-Dt-Signature": sign(body), "Content-Type": "application/json"},
        timeout=timeout,
    )
