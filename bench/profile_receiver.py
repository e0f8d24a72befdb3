"""Where does a push's time go inside the receiver? (in-process, no HTTP server)

Runs ``--requests`` signed, unique pushes (``bench.pushes``) through Flask's test client
against an ``EmbeddedRedis``:

1. timing, not profiled: the mean µs per ``POST /dt/events`` of the bare app
   (``bench.apps.create_bare_app``, reads the body, 200), of durable-min (one Redis
   ``SET``) and of the receiver (``connector.web.app:create_app``), same pushes, same process,
   one after the other. receiver - bare is the receiver's own work per push including
   its Redis round trip; receiver - durable-min is what it costs beyond one plain
   Redis write. All three pay Flask's test-client overhead alike; gunicorn and HTTP
   sockets are left out;
2. the same receiver run again under cProfile (Redis flushed first, so every push is
   new again), printing the top functions by cumulative and by own (total) time.

The receiver's per-push log line goes to ``/dev/null`` (still formatted and written) so
the output stays readable. Every answer must be 200 "accepted" and the queue must hold
exactly one job per push; otherwise the figures would describe an error path.

    python -m bench.profile_receiver                   # 20000 pushes, top 30
    python -m bench.profile_receiver --requests 5000 --top 40
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import pstats
import secrets
import sys
import time
from collections.abc import Sequence

from flask import Flask
from redis import Redis

from bench.apps import create_bare_app, create_durable_min_app
from bench.pushes import HS_HEADER, PATH, PushFactory
from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core.keys import QUEUE_PREFIX
from connector.core.logs import AccessLog
from connector.core.settings import Settings, default_of
from connector.web.app import create_app

Push = tuple[bytes, str]


def post_all(app: Flask, pushes: Sequence[Push], *, check_accepted: bool) -> float:
    """POST every push through the test client; returns the mean µs per request."""
    client = app.test_client()
    bad = 0
    started = time.perf_counter()
    for body, token in pushes:
        response = client.post(PATH, data=body, headers={HS_HEADER: token}, content_type="application/json")
        if response.status_code != 200 or (check_accepted and b"accepted" not in response.data):
            bad += 1
    elapsed = time.perf_counter() - started
    if bad:
        raise RuntimeError(f"{bad} of {len(pushes)} pushes were not answered 200 accepted")
    return elapsed / len(pushes) * 1e6


def silence_push_log() -> None:
    """Point the JSON log handlers ``create_app`` installed at /dev/null."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for name in ("connector", "workers"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="pushes per pass")
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile table")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured pushes before each pass")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.top < 1 or args.warmup < 0:
        parser.error("--requests and --top must be positive, --warmup not negative")

    secret = secrets.token_urlsafe(32)
    factory = PushFactory(secret)
    factory.check_against_pyjwt()
    warm = list(PushFactory(secret).pushes(args.warmup))
    pushes = list(factory.pushes(args.requests))
    queue_key = QUEUE_PREFIX + default_of("CONNECTOR_QUEUE")

    with EmbeddedRedis() as embedded:
        redis = Redis.from_url(embedded.url)
        bare = create_bare_app()
        durable_min = create_durable_min_app(embedded.url)
        with contextlib.redirect_stdout(io.StringIO()):  # the "receiver ready" line
            receiver = create_app(
                Settings(redis_url=embedded.url, signature_secrets=(secret,)),
                access_log=AccessLog(os.open(os.devnull, os.O_WRONLY)),  # still formatted + written
            )
        silence_push_log()

        post_all(bare, warm, check_accepted=False)
        bare_us = post_all(bare, pushes, check_accepted=False)
        post_all(durable_min, warm, check_accepted=False)
        durable_min_us = post_all(durable_min, pushes, check_accepted=False)

        post_all(receiver, warm, check_accepted=True)
        redis.flushall()
        receiver_us = post_all(receiver, pushes, check_accepted=True)
        queued = int(redis.llen(queue_key))
        if queued != len(pushes):
            raise RuntimeError(f"{queued} jobs queued for {len(pushes)} pushes")

        redis.flushall()
        profiler = cProfile.Profile()
        profiler.enable()
        profiled_us = post_all(receiver, pushes, check_accepted=True)
        profiler.disable()
        redis.close()

    print(
        f"Receiver profile: {args.requests} signed unique pushes ({len(pushes[0][0])}-byte bodies), "
        "Flask test client, EmbeddedRedis"
    )
    print(f"  bare        POST: {bare_us:8.1f} µs/request (mean)")
    print(f"  durable-min POST: {durable_min_us:8.1f} µs/request (mean)")
    print(f"  receiver    POST: {receiver_us:8.1f} µs/request (mean)")
    print(
        f"  receiver - bare:        {receiver_us - bare_us:7.1f} µs/request (receiver/bare {receiver_us / bare_us:.2f})"
    )
    print(
        f"  receiver - durable-min: {receiver_us - durable_min_us:7.1f} µs/request "
        f"(receiver/durable-min {receiver_us / durable_min_us:.2f})"
    )
    print(f"  (under cProfile the receiver took {profiled_us:.1f} µs/request)")
    for key, title in (("cumulative", "cumulative time"), ("tottime", "total (own) time")):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"\n=== top {args.top} by {title} ===")
        print(_table_only(out.getvalue()))
    print("\n=== the receiver's own code (connector/), profiled µs per push ===")
    print(_package_table(profiler, "connector", len(pushes)))
    return 0


def _package_table(profiler: cProfile.Profile, package: str, pushes: int) -> str:
    """Cumulative and own µs per push of every function in ``package``, costliest first."""
    marker = f"{os.sep}{package}{os.sep}"
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [
        (cumtime, tottime, calls, f"{os.path.basename(file)}:{line}({name})")
        for (file, line, name), (_, calls, tottime, cumtime, _callers) in stats.items()
        if marker in file
    ]
    rows.sort(reverse=True)
    lines = [f"{'cum µs':>9} {'own µs':>9} {'calls/push':>10}  function"]
    for cumtime, tottime, calls, where in rows:
        lines.append(f"{cumtime / pushes * 1e6:9.1f} {tottime / pushes * 1e6:9.1f} {calls / pushes:10.2f}  {where}")
    return "\n".join(lines)


def _table_only(report: str) -> str:
    """The pstats totals line and table, without the ordering/restriction notes."""
    lines = report.splitlines()
    totals = [line.strip() for line in lines if "function calls" in line][:1]
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join([*totals, "", *lines[i:]]).rstrip()
    return report.rstrip()


if __name__ == "__main__":
    sys.exit(main())
