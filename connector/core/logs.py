"""Structured logging: one JSON object per line on stdout, as Heroku's log router expects.

``push_line`` renders the single per-request line of ``POST /dt/events`` and
``AccessLog`` writes it. Both are hand-made because they run on every push: the line
is built from the few fields it has (short strings and numbers; nothing from headers,
so never a secret or token), and it goes to stdout with ``os.write`` rather than
through ``logging``. With logging's own ``QueueHandler`` and ``QueueListener`` instead,
the web workers spent 796 instead of 619 µs of CPU per push and the receiver fell from
0.83 to 0.67 of durable-min's requests per second (``bench.ingress``, python-svc,
2026-12-04). Under load even that one write system call
per push measured ~17 µs, so lines are buffered for at most ``flush_interval_s`` (like
nginx's ``access_log … buffer= flush=``) and written together; ``flush_interval_s=0``
writes each line at once. A buffered line can be lost only if the process is killed
outright (SIGKILL); a normal stop flushes. Each write is whole lines, so lines from
concurrent processes never interleave. Everything else (start-up, warnings, workers)
uses ``logging`` with ``JsonFormatter``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time

from connector.core.events import Push

_dumps = json.dumps


class AccessLog:
    """Writes one push line per request to a file descriptor (stdout by default)."""

    MAX_PENDING_LINES = 256
    """Flush at once when this many lines wait, whatever the interval."""

    def __init__(self, fd: int | None = None, *, enabled: bool = True, flush_interval_s: float = 0.0) -> None:
        self.fd = 1 if fd is None else fd  # the process's stdout, whatever sys.stdout is now
        self.enabled = enabled
        self.flush_interval_s = flush_interval_s
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flusher_pid = 0

    def write(self, line: str) -> None:
        """Queue (or write) ``line``; never raises (a full disk must not fail a push)."""
        if not self.enabled:
            return
        if self.flush_interval_s <= 0:
            self._write_out(line + "\n")
            return
        if self._flusher_pid != os.getpid():
            self._start_flusher()  # first write in this (possibly forked) process
        with self._lock:
            self._pending.append(line)
            full = len(self._pending) >= self.MAX_PENDING_LINES
        if full:
            self.flush()

    def flush(self) -> None:
        """Write every pending line now."""
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            self._write_out("\n".join(lines) + "\n")

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._pending = []  # lines inherited from a parent process are the parent's
            self._flusher = threading.Thread(target=self._flush_forever, name="access-log", daemon=True)
            self._flusher.start()
            atexit.register(self.flush)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_interval_s)
            self.flush()

    def _write_out(self, text: str) -> None:
        data = text.encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass


def push_line(
    *,
    status: int,
    outcome: str,
    ms: float,
    push: Push | None = None,
    reason: str | None = None,
) -> str:
    """The JSON log line for one push (``level`` is info, warning for 4xx, error for 5xx).

    ``push`` is None when the request was refused before its body was parsed.
    """
    level = "info" if status < 400 else "warning" if status < 500 else "error"
    line = f'{{"log":"push","level":"{level}","status":{status},"outcome":"{outcome}","ms":{ms:.2f}'
    if push is not None:
        line += (
            f',"eventId":{_dumps(push.event_id)},"eventType":{_dumps(push.event_type)}'
            f',"device":{_dumps(push.device_id)}'
        )
    if reason is not None:
        line += f',"reason":"{reason}"'
    return line + "}"


class JsonFormatter(logging.Formatter):
    """Messages that already are JSON pass through; anything else is wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message
        doc = {"log": record.name, "level": record.levelname.lower(), "msg": message}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _dumps(doc)


def configure(level: str = "INFO") -> None:
    """Send the ``connector`` and ``workers`` loggers to stdout as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    for name in ("connector", "workers"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
