"""Redis budget: bytes per dedupe marker, per queued event, per finished job, per dead letter.

Measured as the growth of Redis's ``used_memory`` while N realistic pushes (``bench.pushes``,
~650-byte DT temperature events) go through the receiver's own dedupe+enqueue step
(``connector.core.enqueue.Enqueuer``), against an ``EmbeddedRedis`` (the server on PATH):

1. queued: marker + job hash + queue entry per event, for one destination and for two;
2. markers only: the same after the jobs and queue are removed (what stays for
   ``DEDUPE_TTL_S`` after delivery);
3. a finished job (kept ``RESULT_TTL_S`` after delivery) and a dead letter (kept 14 days).

Then prints a sizing table: events per day → memory in steady state → smallest Heroku
Redis plan with headroom for a backlog, beside the connections the default formation (one web
dyno, one worker dyno) can open, from the settings' bounds.

    python -m bench.redis_budget               # 20 000 events
"""

from __future__ import annotations

import argparse
import json
import time

from redis import Redis

from bench.pushes import PushFactory
from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core.enqueue import Enqueuer
from connector.core.jobspec import RESULT_TTL_S, JobTemplate

QUEUE = "dt-forward"
PLANS = (("mini", 25, 20), ("premium-0", 50, 40), ("premium-1", 100, 80), ("premium-2", 250, 200),
         ("premium-3", 500, 400), ("premium-5", 1000, 1000), ("premium-7", 7000, 10_000))  # fmt: skip
"""Heroku Key-Value Store plans: (name, memory MB, connections), as Heroku listed them in 2026."""


def used(redis: Redis) -> int:
    return int(redis.info("memory")["used_memory"])


def measure(redis: Redis, count: int, destinations: tuple[str, ...]) -> tuple[float, float]:
    """(bytes per queued event, bytes per remaining dedupe marker) for ``destinations``."""
    redis.flushall()
    factory = PushFactory("s" * 32)
    enqueuer = Enqueuer(
        redis,
        queue_name=QUEUE,
        destinations=destinations,
        dedupe_ttl_s=86400,
        template=JobTemplate.from_rq(queue_name=QUEUE, timeout_s=20),
    )
    enqueuer.register_queue()
    pushes = [factory.push(i)[0] for i in range(count)]
    before = used(redis)
    now = time.time()
    for i, body in enumerate(pushes):
        enqueuer.enqueue(json.loads(body)["event"]["eventId"], body, received_at=now + i * 1e-6)
    queued = (used(redis) - before) / count
    for key in redis.scan_iter("rq:job:*", count=1000):
        redis.delete(key)
    redis.delete(f"rq:queue:{QUEUE}")
    markers = (used(redis) - before) / count
    return queued, markers


def measure_finished(redis: Redis, url: str, count: int) -> float:
    """Bytes per delivered job while it is kept (``RESULT_TTL_S``), beyond its marker."""
    import logging
    import os

    from connector.core.settings import Settings
    from workers.run.dyno import build_runner

    os.environ.update({"REDIS_URL": url, "DT_SIGNATURE_SECRET": "s" * 32, "CONNECTOR_DESTINATIONS": "log"})
    logging.getLogger("workers").setLevel(logging.WARNING)
    _, marker = measure(redis, count, ("log",))
    redis.flushall()
    measure_queue = Enqueuer(
        redis, queue_name=QUEUE, destinations=("log",), dedupe_ttl_s=86400,
        template=JobTemplate.from_rq(queue_name=QUEUE, timeout_s=20),
    )  # fmt: skip
    factory = PushFactory("s" * 32, tag="finished")
    before = used(redis)
    for i in range(count):
        body = factory.push(i)[0]
        measure_queue.enqueue(json.loads(body)["event"]["eventId"], body, received_at=time.time())
    build_runner(Settings.from_env(), burst=True).run()  # the worker process as the Procfile runs it
    return (used(redis) - before) / count - marker


def measure_dead_letter(redis: Redis, count: int) -> float:
    """Bytes per dead letter with a full (500-character) response excerpt."""
    from connector.core import deadletters

    redis.flushall()
    factory = PushFactory("s" * 32, tag="deadlett")
    before = used(redis)
    for i in range(count):
        push = json.loads(factory.push(i)[0])
        deadletters.record(
            redis, key=f"moost-{push['event']['eventId']}", destination="moost", push=push, received_at=time.time(),
            reason="http-400", status=400, excerpt="x" * 500, now=time.time(),
        )  # fmt: skip
    return (used(redis) - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        redis = Redis.from_url(server.url)
        version = redis.info("server")["redis_version"]
        one_queued, marker = measure(redis, args.events, ("moost",))
        two_queued, _ = measure(redis, args.events, ("moost", "spot"))
        finished = measure_finished(redis, server.url, min(args.events, 5000))
        dead_letter = measure_dead_letter(redis, min(args.events, 5000))
    job = two_queued - one_queued  # one more job hash + queue entry
    print(f"Redis {version}, {args.events} events of ~650 bytes each:")
    print(f"  dedupe marker (kept DEDUPE_TTL_S):          {marker:7.0f} bytes")
    print(f"  queued event, one destination:              {one_queued:7.0f} bytes (marker + job + queue entry)")
    print(f"  each further destination:                   {job:7.0f} bytes")
    print(f"  finished job (kept RESULT_TTL_S={RESULT_TTL_S} s):       {finished:7.0f} bytes (job, result, registry)")
    print(f"  dead letter (kept 14 days, full excerpt):   {dead_letter:7.0f} bytes")
    print()
    connections = formation_connections()
    print(f"connections of the default formation (one web, one worker dyno, at most): {connections}")
    print("sizing, two destinations, 24 h dedupe window, room for a 12 h backlog of undelivered jobs,")
    print("memory and connections each at most 80 % of the plan's:")
    print(f"{'events/day':>12} {'markers MB':>11} {'12h backlog MB':>15} {'total MB':>9}  plan (connections)")
    for per_day in (10_000, 100_000, 500_000, 1_000_000, 5_000_000):
        markers_mb = per_day * marker / 1e6
        backlog_mb = per_day / 2 * (two_queued - marker) / 1e6
        total = markers_mb + backlog_mb
        plan = next(
            (f"{name} ({connections} of {limit})" for name, mb, limit in PLANS
             if total <= 0.8 * mb and connections <= 0.8 * limit),
            "larger than premium-7",
        )  # fmt: skip
        print(f"{per_day:>12,} {markers_mb:>11.1f} {backlog_mb:>15.1f} {total:>9.1f}  {plan}")


def formation_connections() -> int:
    """Redis connections one web and one worker dyno open at most with the default settings."""
    from connector.core.settings import Settings
    from workers.run.dyno import redis_connections_per_dyno

    settings = Settings(redis_url="redis://unused", insecure_skip_verify=True)
    web_processes = 2  # WEB_CONCURRENCY on a 512 MB dyno
    return web_processes * settings.web_redis_connections + redis_connections_per_dyno(settings)


if __name__ == "__main__":
    main()
