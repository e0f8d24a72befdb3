"""dt-connector failed: list, show and replay dead letters; times on the command line."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from connector.core import deadletters
from tests.support.samples import push_of
from tests.support.standins import Reply, StandIn, events_posted
from workers.jobs import forward


def test_dead_letter_list_show_replay_round_trip(moost_env: StandIn, redis: Redis, capsys):
    """400 → dead letter → fix at the downstream → `failed replay` → delivered (historical)."""
    from connector.cli.main import main

    moost_env.script("/events/v1", Reply(400, {"error": "unknown building"}))
    assert forward("moost", push_of("temperature", event_id="dl1"), 1.0).startswith("dead-letter")
    assert forward("moost", push_of("contact", event_id="dl2"), 1.0).startswith("dead-letter")

    assert main(["failed", "list", "--destination", "moost", "--event-type", "contact"]) == 0
    listed = capsys.readouterr().out
    assert "moost-dl2" in listed and "moost-dl1" not in listed
    assert "1 dead letter(s)" in listed
    assert main(["failed", "show", "dl-missing"]) == 1
    capsys.readouterr()

    key = deadletters.list_dead(redis, event_type="temperature")[0].key
    assert main(["failed", "show", key]) == 0
    assert "unknown building" in capsys.readouterr().out

    moost_env.script("/events/historical/v1", Reply(200))  # the building now exists
    assert main(["failed", "replay", "--since", "1h", key]) == 0
    assert "1 dead letter(s) queued again" in capsys.readouterr().out
    assert deadletters.get(redis, key) is None
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    [batch] = events_posted(moost_env, "/events/historical/v1")
    assert batch[0]["type"] == "TEMPERATURE"
    assert len(deadletters.list_dead(redis)) == 1  # the contact one was not replayed


def test_parse_time():
    from connector.core.times import parse_since as parse_time

    assert parse_time("24h", now=100_000.0) == 100_000.0 - 86_400
    assert parse_time("30m", now=10_000.0) == 10_000.0 - 1_800
    assert parse_time("2026-11-23T00:00:00Z", now=0) == 1_795_392_000.0
    with pytest.raises(ValueError):
        parse_time("yesterday", now=0)


def test_the_command_line_and_backfill_read_times_alike():
    """Once two parse_times disagreed: backfill refused a time without a zone, `failed` took it as UTC."""
    from datetime import UTC, datetime

    from connector.core.times import parse_since
    from connector.dt.backfill import window

    with pytest.raises(ValueError, match="zone"):
        parse_since("2026-11-23T00:00:00", now=0)
    with pytest.raises(ValueError, match="zone"):
        window(since=None, start="2026-11-23T00:00:00", end=None, now=datetime(2026, 11, 24, tzinfo=UTC))
