"""Throttling of wrong operator tokens, per client and per process. Pure: ``now`` is passed in.

A wrong ``METRICS_TOKEN`` costs the guesser a slot; once a client has used
``per_client`` slots within ``window_s`` (or all clients together ``overall``), its
attempts are answered 429 without checking the token until the oldest slot expires.
The token's length floor (``settings.MIN_SECRET_CHARS``) makes guessing hopeless anyway;
the throttle keeps a guesser from filling the logs and the CPU (about 750 tries a second
from one client before).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque


class FailedAttempts:
    """Sliding windows of failed attempts, bounded in memory (``max_clients`` tracked)."""

    def __init__(self, *, per_client: int = 10, overall: int = 100, window_s: float = 60.0, max_clients: int = 4096):
        self.per_client, self.overall, self.window_s, self.max_clients = per_client, overall, window_s, max_clients
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def wait_s(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before its next attempt is checked (0: check it now)."""
        with self._lock:
            self._expire(self._all, now)
            mine = self._clients.get(client)
            if mine is not None:
                self._expire(mine, now)
            waits = [0.0]
            if mine is not None and len(mine) >= self.per_client:
                waits.append(mine[0] + self.window_s - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window_s - now)
            return max(waits)

    def failed(self, client: str, now: float) -> None:
        """Record a wrong token from ``client``."""
        with self._lock:
            mine = self._clients.pop(client, None) or deque()
            mine.append(now)
            self._clients[client] = mine  # most recent last
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            self._all.append(now)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()
