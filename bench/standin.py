"""A lean MOOST stand-in for the worker benchmarks (asyncio, keep-alive, own process).

``http.server`` costs about as much CPU per request as the worker under test, and on a
2-core machine that cost lands in the worker's measured time. This one parses only what
it needs: the request line, ``Content-Length`` and ``Idempotency-Key``. It answers
``GET /auth/token/v1`` with a token, ``POST /events/v1`` and ``/events/historical/v1``
with 201/200 after ``delay_s``, and ``GET /stats`` with ``{"requests", "unique",
"duplicates"}`` counts of event posts accepted (by ``Idempotency-Key``, i.e. DT eventId;
a duplicate is a key accepted more than once).

For the fault suite it can also misbehave, decided per request by a seeded RNG: answer
500 to ``fail_rate`` of event posts, and stall ``stall_rate`` of them for ``stall_s``
before dropping the connection unanswered (and not ingesting the event, as a server that
gave up on the request would).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import signal
import socket
import time

_TOKEN = json.dumps({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 86400}).encode()


def _response(status: str, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


async def _serve(sock: socket.socket, delay_s: float, faults: tuple[float, float, float, int]) -> None:
    keys: dict[bytes, int] = {}
    count = 0
    fail_rate, stall_rate, stall_s, seed = faults
    rng = random.Random(seed)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                length = 0
                key = b""
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    lowered = name.strip().lower()
                    if lowered == b"content-length":
                        length = int(value)
                    elif lowered == b"idempotency-key":
                        key = value.strip()
                if length:
                    await reader.readexactly(length)
                if path.startswith(b"/auth/token/v1"):
                    writer.write(_response("200 OK", _TOKEN))
                elif path.startswith(b"/stats"):
                    duplicates = sum(n - 1 for n in keys.values())
                    stats = {"requests": count, "unique": len(keys), "duplicates": duplicates}
                    if path.startswith(b"/stats/keys"):
                        stats["keys"] = sorted(k.decode() for k in keys)  # type: ignore[assignment]
                    writer.write(_response("200 OK", json.dumps(stats).encode()))
                elif method == b"POST" and path.startswith(b"/events/"):
                    if delay_s:
                        await asyncio.sleep(delay_s)
                    count += 1
                    draw = rng.random()
                    if draw < stall_rate:
                        await asyncio.sleep(stall_s)
                        writer.close()
                        return
                    if draw < stall_rate + fail_rate:
                        writer.write(_response("500 Internal Server Error", b'{"error":"injected"}'))
                    else:
                        keys[key] = keys.get(key, 0) + 1
                        writer.write(_response("201 Created"))
                else:
                    writer.write(_response("404 Not Found"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, sock=sock, backlog=512)
    async with server:
        await server.serve_forever()


def _run(sock: socket.socket, delay_s: float, faults: tuple[float, float, float, int]) -> None:
    # A forked child inherits its parent's signal handlers (a test may have run an RQ worker in
    # the parent); ``close()`` must simply end this process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    asyncio.run(_serve(sock, delay_s, faults))


class LeanStandIn:
    """Start in a child process on a free 127.0.0.1 port; ``close()`` stops it."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        fail_rate: float = 0.0,
        stall_rate: float = 0.0,
        stall_s: float = 0.0,
        seed: int = 1,
    ) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        faults = (fail_rate, stall_rate, stall_s, seed)
        self._process = multiprocessing.get_context("fork").Process(
            target=_run, args=(sock, delay_s, faults), daemon=True
        )
        self._process.start()
        sock.close()
        time.sleep(0.2)

    def stats(self) -> dict[str, int]:
        import requests

        return dict(requests.get(f"{self.url}/stats", timeout=5).json())

    def keys(self) -> set[str]:
        """Every eventId accepted so far."""
        import requests

        return set(requests.get(f"{self.url}/stats/keys", timeout=30).json()["keys"])

    def close(self) -> None:
        self._process.terminate()
        self._process.join(5)
