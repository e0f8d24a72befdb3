"""``dt-connector failed list|show|replay``: inspect dead letters and re-queue them after a fix."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import click
from redis import Redis

from connector.cli.environment import tool_environ
from connector.core import deadletters
from connector.core.redis_conn import connect_to
from connector.core.settings import Settings
from connector.core.times import parse_since
from connector.web.ops.metrics import collect

_FILTERS = [
    click.option("--destination", type=click.Choice(["moost", "spot", "log"])),
    click.option("--event-type"),
    click.option("--since", help="e.g. 24h, 30m, 7d, or an ISO time"),
    click.option("--until", help="e.g. 1h, or an ISO time"),
]


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_FILTERS):
        command = option(command)
    return command


@click.group("failed")
def failed() -> None:
    """List, show or replay dead-lettered deliveries."""


@failed.command("list")
@_filters
def failed_list(**filters: Any) -> int:
    """List dead letters (filters combine), and where every other job is."""
    return run(SimpleNamespace(action="list", keys=(), **filters), Settings.from_env(tool_environ(os.environ)))


@failed.command("show")
@click.argument("key")
def failed_show(key: str) -> int:
    """Show one dead letter in full."""
    return run(SimpleNamespace(action="show", key=key), Settings.from_env(tool_environ(os.environ)))


@failed.command("replay")
@_filters
@click.argument("keys", nargs=-1)
def failed_replay(keys: tuple[str, ...], **filters: Any) -> int:
    """Queue dead letters again (default: all matching the filters) after a fix."""
    return run(SimpleNamespace(action="replay", keys=keys, **filters), Settings.from_env(tool_environ(os.environ)))


def run(args: Any, settings: Settings) -> int:
    redis = connect_to(settings)
    now = time.time()
    if args.action == "show":
        letter = deadletters.get(redis, args.key)
        if letter is None:
            print(f"no dead letter {args.key!r} (expired, replayed or never there)")
            return 1
        print(json.dumps(letter.__dict__, indent=2, default=str))
        return 0
    try:
        since = parse_since(args.since, now=now) if args.since else None
        until = parse_since(args.until, now=now) if args.until else None
    except ValueError as exc:
        print(f"dt-connector failed: {exc}")
        return 2
    letters = deadletters.list_dead(
        redis, destination=args.destination, event_type=args.event_type, since=since, until=until
    )
    if args.action == "replay" and args.keys:
        wanted = set(args.keys)
        letters = [letter for letter in letters if letter.key in wanted]
    if args.action == "list":
        for letter in letters:
            when = datetime.fromtimestamp(letter.failed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status = letter.status if letter.status is not None else "-"
            print(f"{letter.key}\t{letter.destination}\t{letter.event_type}\t{when}\t{status}\t{letter.reason}")
        print(f"{len(letters)} dead letter(s)")
        jobs = collect(redis, queue_name=settings.queue_name, destinations=settings.destinations, now=now).jobs
        print(
            f"jobs: {jobs.pending} pending ({jobs.queued} queued, {jobs.scheduled} scheduled, {jobs.started} in "
            f"progress, {jobs.intermediate} stranded, {jobs.failed} failed in RQ and not yet kept as dead letters); "
            f"unaccounted: {jobs.unaccounted}"
        )
        return 0
    return replay(redis, settings, letters, now=now)


def replay(redis: Redis, settings: Settings, letters: list[deadletters.DeadLetter], *, now: float) -> int:
    """Queue each dead letter again (as a replay), printing what was queued."""
    queued = deadletters.replay(
        redis, letters, queue_name=settings.queue_name, job_timeout_s=settings.job_timeout_s, now=now
    )
    for key in queued:
        print(f"replaying {key}")
    print(f"{len(letters)} dead letter(s) queued again")
    return 0
