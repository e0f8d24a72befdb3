"""Tests for connector.core.logs: the per-push line and its writer."""

from __future__ import annotations

import json
import os
import threading
import time

from connector.core.events import Push
from connector.core.logs import AccessLog, push_line


def test_push_line_is_json_with_level_by_status():
    line = json.loads(push_line(status=200, outcome="accepted", ms=1.234, push=Push('a"b', "t", "d")))
    assert line == {
        "log": "push",
        "level": "info",
        "status": 200,
        "outcome": "accepted",
        "ms": 1.23,
        "eventId": 'a"b',
        "eventType": "t",
        "device": "d",
    }
    assert json.loads(push_line(status=401, outcome="rejected", ms=0, reason="x"))["level"] == "warning"
    assert json.loads(push_line(status=503, outcome="rejected", ms=0, reason="x"))["level"] == "error"


def test_buffered_lines_are_written_within_the_interval(tmp_path):
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        log = AccessLog(fd, flush_interval_s=0.05)
        for n in range(5):
            log.write(f'{{"n":{n}}}')
        deadline = time.monotonic() + 5
        while path.read_text().count("\n") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [0, 1, 2, 3, 4]
    finally:
        os.close(fd)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        log = AccessLog(fd, flush_interval_s=0.01)

        def writer(k: int) -> None:
            for n in range(500):
                log.write(f'{{"k":{k},"n":{n}}}')

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.flush()
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        assert len(lines) == 2000
        for k in range(4):
            assert [x["n"] for x in lines if x["k"] == k] == list(range(500))
    finally:
        os.close(fd)


def test_disabled_and_broken_fd_never_raise():
    AccessLog(enabled=False).write("x")
    AccessLog(987654).write("x")  # EBADF is swallowed: logging must not fail a push
