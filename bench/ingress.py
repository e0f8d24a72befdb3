"""Ingress benchmark: what does the receiver cost on top of the least it must do?

Three apps run one after another under the project's gunicorn settings, against one local Redis:
``bare`` (Flask reads the body, 200), ``durable-min`` (reads the body and does one Redis ``SET``:
the floor for any receiver that answers only after a durable write) and ``receiver``
(``connector.web.app:create_app()``). Target::

    receiver req/s >= 0.85 x durable-min req/s, receiver p99 <= 2 x durable-min p99, no errors

wrk (Debian's ``wrk``) sends correctly signed pushes, each with its own eventId, from a pregenerated
pool (``bench/wrk_pool.lua``; Redis is flushed before each run, so no push is a duplicate). After a
receiver run the RQ jobs must match the 200 answers (wrk abandons at most one request per connection
when its clock stops: ``200s <= jobs <= 200s + unanswered``).

Keep-alive connections stay with the gunicorn worker that accepted them, and one worker often grabs
nearly all of them (16+0 gave half the req/s of 9+7 on the bare app), so a run whose connections
landed unevenly is started over, at most 8 times (``--no-balance-guard``: off). Targets alternate
over ``--rounds`` rounds; the summary reports medians. Exit status: 0 pass, 1 fail, 2 setup problem.

    python -m bench.ingress                      # 5 rounds x 8 s, wrk -t1 -c16
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from redis import Redis

from bench.pushes import PATH, PushFactory, write_pool
from connector.cli.dev.embedded_redis import EmbeddedRedis, free_port
from connector.cli.main import GUNICORN_CONFIG, web_command
from connector.core.keys import QUEUE_PREFIX, SEEN_PREFIX
from connector.core.settings import default_of

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # a test extra of the project; without it the balance guard is off
    psutil = None

REPO = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_pool.lua"

BARE, DURABLE_MIN, RECEIVER = "bare", "durable-min", "receiver"
TARGETS: dict[str, str] = {
    BARE: "bench.apps:create_bare_app()",
    DURABLE_MIN: "bench.apps:create_durable_min_app()",
    RECEIVER: "connector.web.app:create_app()",
}
"""Target name → gunicorn app spec."""

MIN_RPS_RATIO = 0.85
MAX_P99_RATIO = 2.0

_SERVER_ENV_DROP = re.compile(
    r"^(DT_|CONNECTOR_|REDIS_|PORT$|WEB_CONCURRENCY$|GUNICORN_|MAX_BODY_BYTES$|DEDUPE_TTL_S$|"
    r"JOB_TIMEOUT_S$|RETRY_AFTER_S$|GUNICORN_CMD_ARGS$)"
)
"""Inherited variables that would change what a server does; the benchmark sets its own."""


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    """One measured run of one target."""

    target: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    responses: int
    ok_2xx: int
    non_2xx: int
    socket_errors: int
    issued: int
    unanswered: int
    duration_s: float
    redis_writes: int | None = None
    """durable-min: keys written; receiver: RQ jobs queued (LLEN)."""
    seen_markers: int | None = None
    writes_ok: bool | None = None
    """Do the writes in Redis match the 2xx answers (see the module docstring)?"""
    pool_wrapped: bool = False
    conns_per_worker: list[int] | None = None
    """How the load generator's keep-alive connections landed on the gunicorn workers (largest first)."""
    balanced: bool | None = None
    """Every worker held at least ``Bench.min_per_worker`` connections (None: not checked)."""
    attempts: int = 1
    cpu_us_per_request: float = 0.0
    """CPU time of the gunicorn workers per answered request: steadier than req/s on a shared machine."""

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


@dataclass
class LoadFigures:
    """What a load generator reports for one run (before Redis is inspected)."""

    duration_s: float
    responses: int
    ok_2xx: int
    non_2xx: int
    socket_errors: int
    issued: int
    unanswered: int
    p50_us: float
    p99_us: float
    mean_us: float
    pool_wrapped: bool = False
    max_thread_issued: int = 0
    spread: list[int] | None = None
    """Established connections per gunicorn worker, sampled once all were accepted."""
    aborted: bool = False
    """Stopped early because the connections were spread too unevenly over the workers."""
    cpu_s: float = 0.0


# --------------------------------------------------------------------------- servers


class GunicornServer:
    """One target under gunicorn with the project's config, on 127.0.0.1:``port``."""

    def __init__(self, target: str, *, env: dict[str, str], log_path: Path) -> None:
        self.target = target
        self.port = free_port()
        self._env = env
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 30.0) -> None:
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            web_command(f"127.0.0.1:{self.port}", TARGETS[self.target]),
            cwd=REPO,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.target}: gunicorn exited with {self._process.returncode}\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.target}: not ready after {timeout_s:.0f} s\n{self.log_tail()}")

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM: gunicorn finishes the requests in flight, then exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def connections_per_worker(self) -> list[int] | None:
        """Established client connections held by each gunicorn worker, largest first.

        None when psutil is not installed or the processes cannot be inspected.
        """
        if psutil is None or self._process is None:
            return None
        try:
            workers = psutil.Process(self._process.pid).children()
            counts = [
                sum(
                    1
                    for c in worker.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
                )
                for worker in workers
            ]
        except psutil.Error:
            return None
        return sorted(counts, reverse=True)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the gunicorn worker processes have used so far."""
        if psutil is None or self._process is None:
            return 0.0
        try:
            return sum(sum(w.cpu_times()[:2]) for w in psutil.Process(self._process.pid).children())
        except psutil.Error:
            return 0.0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def server_env(*, redis_url: str, secret: str, web_concurrency: int, web_redis_connections: int) -> dict[str, str]:
    """The environment every target gets: identical for all three."""
    env = {k: v for k, v in os.environ.items() if not _SERVER_ENV_DROP.match(k)}
    env.update(
        REDIS_URL=redis_url,
        DT_SIGNATURE_SECRET=secret,
        WEB_CONCURRENCY=str(web_concurrency),
        WEB_REDIS_CONNECTIONS=str(web_redis_connections),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


# --------------------------------------------------------------------------- load generators


class WrkPools:
    """Pregenerated push pools for wrk: one for warm-ups, one for measured runs.

    Each wrk thread gets ``share`` pushes; a share is sized for ``pool_rate`` req/s for the
    whole run on that one thread, so the split between threads never matters.
    """

    def __init__(
        self, directory: Path, secret: str, *, threads: int, duration_s: int, warmup_s: int, pool_rate: int
    ) -> None:
        self.directory = directory
        self.secret = secret
        self.threads = threads
        self.warmup = directory / "warmup-pool.txt"
        self.measure = directory / "measure-pool.txt"
        self.warmup_share = math.ceil(pool_rate * max(warmup_s, 1) * 1.2)
        self.measure_share = math.ceil(pool_rate * duration_s * 1.2)
        self.measure_bytes = 0

    def build(self) -> None:
        write_pool(PushFactory(self.secret), self.warmup, self.warmup_share * self.threads)
        self.measure_bytes = write_pool(PushFactory(self.secret), self.measure, self.measure_share * self.threads)

    def grow(self, needed_share: int) -> None:
        """Regenerate the measured pool with a bigger share (after a run ran out)."""
        self.measure_share = max(2 * self.measure_share, math.ceil(needed_share * 1.5))
        self.measure_bytes = write_pool(PushFactory(self.secret), self.measure, self.measure_share * self.threads)


SpreadProbe = Callable[[], list[int] | None]
"""Returns the established connections per gunicorn worker (see ``GunicornServer``)."""


def _settled_spread(
    probe: SpreadProbe, connections: int, alive: Callable[[], bool], timeout_s: float = 3.0
) -> list[int] | None:
    """Poll ``probe`` until all ``connections`` are accepted by some worker (or time runs out)."""
    spread = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        time.sleep(0.05)
        spread = probe()
        if spread is None or sum(spread) >= connections:
            break
    return spread


def run_wrk(
    wrk: str,
    *,
    port: int,
    pool: Path,
    threads: int,
    connections: int,
    duration_s: int,
    probe: SpreadProbe | None = None,
    min_per_worker: int = 0,
) -> LoadFigures:
    """One wrk run with ``bench/wrk_pool.lua``.

    With ``probe``, once wrk's connections are accepted the run is aborted (SIGINT;
    ``LoadFigures.aborted``) if some gunicorn worker holds fewer than ``min_per_worker``.
    """
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}{PATH}",
        "--",
        str(pool),
        str(threads),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spread = None
    aborted = False
    try:
        if probe is not None:
            spread = _settled_spread(probe, connections, lambda: process.poll() is None)
            if spread and min(spread) < min_per_worker and process.poll() is None:
                process.send_signal(signal.SIGINT)  # wrk stops and still reports
                aborted = True
        stdout, stderr = process.communicate(timeout=duration_s + 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    match = re.search(r"^WRK_RESULT (\{.*\})$", stdout, re.MULTILINE)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout}\n{stderr}")
    doc: dict[str, Any] = json.loads(match.group(1))
    errors = doc["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    responses = int(doc["requests"])
    issued = sum(int(t["issued"]) for t in doc["threads"])
    return LoadFigures(
        duration_s=doc["duration_us"] / 1e6,
        responses=responses,
        ok_2xx=responses - int(errors["status"]),  # wrk counts status >= 400 as errors
        non_2xx=int(errors["status"]),
        socket_errors=int(socket_errors),
        issued=issued,
        unanswered=max(issued - responses, 0),
        p50_us=float(doc["latency_us"]["p50"]),
        p99_us=float(doc["latency_us"]["p99"]),
        mean_us=float(doc["latency_us"]["mean"]),
        pool_wrapped=any(int(t["wrapped"]) for t in doc["threads"]),
        max_thread_issued=max(int(t["issued"]) for t in doc["threads"]),
        spread=spread,
        aborted=aborted,
    )


# --------------------------------------------------------------------------- one run


@dataclass
class Bench:
    """Everything a run needs; built once by ``main``."""

    redis: Redis
    env: dict[str, str]
    workdir: Path
    threads: int
    connections: int
    duration_s: int
    warmup_s: int
    wrk: str
    pools: WrkPools
    min_per_worker: int
    """Fewest connections a gunicorn worker must hold for a wrk run to count (0: no guard)."""
    max_attempts: int = 8

    def load(self, server: GunicornServer, *, warmup: bool, guard: bool = True) -> LoadFigures:
        """One warm-up or measured load run; ``guard``: abort a badly spread wrk run."""
        duration = self.warmup_s if warmup else self.duration_s
        probe = None if warmup else server.connections_per_worker
        pool = self.pools.warmup if warmup else self.pools.measure
        return run_wrk(
            self.wrk,
            port=server.port,
            pool=pool,
            threads=self.threads,
            connections=self.connections,
            duration_s=duration,
            probe=probe,
            min_per_worker=self.min_per_worker if guard and not warmup else 0,
        )

    def wait_quiet(self, *, timeout_s: float = 5.0) -> None:
        """Wait until no more writes land in Redis (the server drained its requests)."""
        deadline = time.monotonic() + timeout_s
        before = int(self.redis.dbsize())
        while time.monotonic() < deadline:
            time.sleep(0.2)
            after = int(self.redis.dbsize())
            if after == before:
                return
            before = after

    def run(self, target: str, round_no: int) -> RunResult:
        server = GunicornServer(target, env=self.env, log_path=self.workdir / f"{target}.log")
        server.start()
        try:
            if self.warmup_s > 0:
                self.load(server, warmup=True)
            figures, attempts = self._measure(server)
        finally:
            server.stop()  # finishes the requests wrk left in flight before Redis is counted
        spread = figures.spread
        result = RunResult(
            target=target,
            round=round_no,
            rps=figures.responses / figures.duration_s,
            p50_ms=figures.p50_us / 1000,
            p99_ms=figures.p99_us / 1000,
            mean_ms=figures.mean_us / 1000,
            responses=figures.responses,
            ok_2xx=figures.ok_2xx,
            non_2xx=figures.non_2xx,
            socket_errors=figures.socket_errors,
            issued=figures.issued,
            unanswered=figures.unanswered,
            duration_s=figures.duration_s,
            pool_wrapped=figures.pool_wrapped,
            conns_per_worker=spread,
            balanced=None if not spread else min(spread) >= self.min_per_worker,
            attempts=attempts,
            cpu_us_per_request=figures.cpu_s / max(1, figures.responses) * 1e6,
        )
        self._count_writes(result)
        if result.errors:
            print(f"    {target}: {result.errors} errors; server log tail:\n{server.log_tail(8)}", flush=True)
        return result

    def _measure(self, server: GunicornServer) -> tuple[LoadFigures, int]:
        """The measured run, repeated when the pool ran out or the connections landed unevenly."""
        attempt = 0
        while True:
            attempt += 1
            self.wait_quiet()
            self.redis.flushall()
            cpu_before = server.cpu_seconds()
            figures = self.load(server, warmup=False, guard=attempt < self.max_attempts)
            figures.cpu_s = server.cpu_seconds() - cpu_before
            if attempt >= self.max_attempts:
                return figures, attempt
            if figures.aborted:
                continue  # a worker got too few of wrk's connections: try again with fresh ones
            if figures.pool_wrapped and self.pools is not None:
                print(
                    f"    pool ran out ({figures.max_thread_issued} requests on one wrk thread); "
                    "growing it and repeating the run",
                    flush=True,
                )
                self.pools.grow(figures.max_thread_issued)
                continue
            return figures, attempt

    def _count_writes(self, result: RunResult) -> None:
        if result.target == DURABLE_MIN:
            result.redis_writes = int(self.redis.dbsize())
        elif result.target == RECEIVER:
            result.redis_writes = int(self.redis.llen(QUEUE_PREFIX + default_of("CONNECTOR_QUEUE")))
            result.seen_markers = sum(1 for _ in self.redis.scan_iter(match=SEEN_PREFIX + "*", count=10_000))
        else:
            return
        writes = result.redis_writes
        in_range = result.ok_2xx <= writes <= result.ok_2xx + result.unanswered
        markers_match = result.seen_markers is None or result.seen_markers == writes
        result.writes_ok = in_range and markers_match and not result.pool_wrapped


# --------------------------------------------------------------------------- reporting


def _fmt_run(r: RunResult) -> str:
    line = (
        f"round {r.round} {r.target:<11} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
        f"p99 {r.p99_ms:6.2f} ms  errors {r.errors}  cpu {r.cpu_us_per_request:5.0f} µs/req"
    )
    if r.conns_per_worker:
        line += f"  conns/worker {'+'.join(map(str, r.conns_per_worker))}"
        if r.balanced is False:
            line += " (UNEVEN)"
    if r.attempts > 1:
        line += f"  attempts {r.attempts}"
    if r.redis_writes is not None:
        what = "jobs" if r.target == RECEIVER else "SETs"
        verdict = "OK" if r.writes_ok else "MISMATCH"
        line += f"  | {what} {r.redis_writes} vs 200s {r.ok_2xx} (+<= {r.unanswered} unanswered)"
        if r.seen_markers is not None:
            line += f", markers {r.seen_markers}"
        line += f": {verdict}"
    return line


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    """Medians per target, ratios and the target check."""
    medians: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        mine = [r for r in runs if r.target == target]
        if not mine:
            continue
        medians[target] = {
            "rps": statistics.median(r.rps for r in mine),
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "errors": float(sum(r.errors for r in mine)),
            "rounds": float(len(mine)),
            "cpu_us_per_request": statistics.median(r.cpu_us_per_request for r in mine),
        }
    rec, dmin, bare = medians[RECEIVER], medians[DURABLE_MIN], medians[BARE]
    ratios = {
        "receiver_vs_durable_min_rps": rec["rps"] / dmin["rps"],
        "receiver_vs_bare_rps": rec["rps"] / bare["rps"],
        "receiver_vs_durable_min_p99": rec["p99_ms"] / dmin["p99_ms"],
        "durable_min_vs_bare_rps": dmin["rps"] / bare["rps"],
        "receiver_vs_durable_min_cpu": rec["cpu_us_per_request"] / dmin["cpu_us_per_request"],
    }
    total_errors = sum(r.errors for r in runs)
    writes_ok = all(r.writes_ok for r in runs if r.writes_ok is not None)
    checks = {
        "rps": ratios["receiver_vs_durable_min_rps"] >= MIN_RPS_RATIO,
        "p99": ratios["receiver_vs_durable_min_p99"] <= MAX_P99_RATIO,
        "no_errors": total_errors == 0,
        "jobs_match_200s": writes_ok,
    }
    return {"medians": medians, "ratios": ratios, "checks": checks, "pass": all(checks.values())}


def print_summary(summary: dict[str, Any], rounds: int) -> None:
    medians, ratios, checks = summary["medians"], summary["ratios"], summary["checks"]
    print()
    print(f"Summary: medians over {rounds} round(s)")
    print(f"  {'target':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'cpu µs/req':>11}")
    for target, m in medians.items():
        print(f"  {target:<12} {m['rps']:9.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {int(m['errors']):7d} "
              f"{m['cpu_us_per_request']:11.0f}")  # fmt: skip
    print()
    print(f"  receiver / durable-min req/s : {ratios['receiver_vs_durable_min_rps']:.3f}")
    print(f"  receiver / bare req/s        : {ratios['receiver_vs_bare_rps']:.3f}")
    print(f"  durable-min / bare req/s     : {ratios['durable_min_vs_bare_rps']:.3f}")
    print(f"  receiver p99 / durable-min p99: {ratios['receiver_vs_durable_min_p99']:.3f}")
    print(f"  receiver / durable-min CPU per request (web workers): {ratios['receiver_vs_durable_min_cpu']:.3f}")
    print()

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(
        f"Target: receiver >= {MIN_RPS_RATIO} x durable-min req/s, receiver p99 <= {MAX_P99_RATIO:g} x "
        "durable-min p99, no errors"
    )
    print(f"  req/s ratio {ratios['receiver_vs_durable_min_rps']:.3f} >= {MIN_RPS_RATIO}: {mark(checks['rps'])}")
    print(f"  p99 ratio   {ratios['receiver_vs_durable_min_p99']:.3f} <= {MAX_P99_RATIO:g}: {mark(checks['p99'])}")
    print(f"  no errors: {mark(checks['no_errors'])}")
    print(f"  RQ jobs match 200 answers (no silent duplicates): {mark(checks['jobs_match_200s'])}")
    print(f"  => {mark(summary['pass'])}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingress",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every target once")
    parser.add_argument("--duration", type=int, default=8, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (not measured)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--web-concurrency", type=int, default=2, help="WEB_CONCURRENCY for every target")
    parser.add_argument(
        "--web-redis-connections", type=int, default=4, help="WEB_REDIS_CONNECTIONS for every target"
    )
    parser.add_argument(
        "--pool-rate",
        type=int,
        default=6000,
        help="req/s one wrk thread is assumed able to reach, to size the push pool",
    )
    parser.add_argument(
        "--balance-guard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start a measured run over when its keep-alive connections landed on the gunicorn "
        "workers too unevenly (a worker with under half its share)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the figures here")
    args = parser.parse_args(argv)
    positive = ("rounds", "duration", "connections", "threads", "web_concurrency", "web_redis_connections", "pool_rate")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench.ingress: needs wrk on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    secret = secrets.token_urlsafe(32)
    factory = PushFactory(secret)
    factory.check_against_pyjwt()
    order = list(TARGETS)
    min_per_worker = 0
    if args.balance_guard and psutil is not None and args.web_concurrency > 1:
        min_per_worker = max(1, math.ceil(args.connections / args.web_concurrency / 2))
    if min_per_worker:
        guard_note = f"restart wrk until every gunicorn worker holds >= {min_per_worker} connections"
    else:
        guard_note = "off" if not args.balance_guard or args.web_concurrency == 1 else "off (needs psutil)"

    with tempfile.TemporaryDirectory(prefix="dt-bench-") as tmp, EmbeddedRedis() as embedded:
        workdir = Path(tmp)
        pools = WrkPools(
            workdir, secret, threads=args.threads, duration_s=args.duration, warmup_s=args.warmup,
            pool_rate=args.pool_rate,
        )  # fmt: skip
        started = time.monotonic()
        pools.build()
        pool_note = (
            f"{pools.measure_share * args.threads} pushes ({pools.measure_bytes / 1e6:.0f} MB), "
            f"{pools.measure_share} per wrk thread, built in {time.monotonic() - started:.1f} s"
        )
        redis = Redis.from_url(embedded.url)
        bench = Bench(
            redis=redis,
            env=server_env(
                redis_url=embedded.url,
                secret=secret,
                web_concurrency=args.web_concurrency,
                web_redis_connections=args.web_redis_connections,
            ),
            workdir=workdir,
            threads=args.threads,
            connections=args.connections,
            duration_s=args.duration,
            warmup_s=args.warmup,
            wrk=wrk,
            pools=pools,
            min_per_worker=min_per_worker,
        )
        loadgen = f"wrk ({_wrk_version(wrk)}) -t{args.threads} -c{args.connections}"
        settings = {
            "load_generator": loadgen,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
            "gunicorn_config": GUNICORN_CONFIG,
            "WEB_CONCURRENCY": args.web_concurrency,
            "WEB_REDIS_CONNECTIONS": args.web_redis_connections,
            "balance_guard": guard_note,
            "redis": f"EmbeddedRedis {embedded.url} (no persistence)",
            "body_bytes": len(factory.body(0)),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        print("Ingress benchmark: bare vs durable-min vs receiver")
        for key, value in settings.items():
            print(f"  {key:<17} {value}")
        print(f"  {'push pool':<17} {pool_note}")
        estimate = args.rounds * len(order) * (args.duration + args.warmup + 4)
        print(f"  {'expected time':<17} ~{estimate} s (+ ~1 s per restarted run)")
        print(flush=True)

        runs: list[RunResult] = []
        try:
            for round_no in range(1, args.rounds + 1):
                shift = (round_no - 1) % len(order)
                for target in order[shift:] + order[:shift]:
                    result = bench.run(target, round_no)
                    runs.append(result)
                    print(_fmt_run(result), flush=True)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 2
        except RuntimeError as exc:
            print(f"bench.ingress: {exc}", file=sys.stderr)
            return 2
        finally:
            redis.close()

    summary = summarise(runs)
    print_summary(summary, args.rounds)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"settings": settings, "runs": [asdict(r) | {"errors": r.errors} for r in runs], **summary}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0 if summary["pass"] else 1


def _wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout + done.stderr).splitlines()[:1]
    return first[0].split(" [")[0] if first else "unknown version"


if __name__ == "__main__":
    sys.exit(main())
