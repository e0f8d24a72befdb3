"""``dt-connector backfill``: DT history → dedupe → workers → MOOST's historical endpoint."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from connector.cli.commands import run_backfill
from connector.core.enqueue import Enqueuer
from connector.core.events import parse_push
from connector.core.settings import Settings
from connector.core.times import parse_duration
from connector.dt.backfill import CHECKPOINT_PREFIX, split_device_name, window, wrap_history_event
from tests.support.dt_standin import PROJECT, DtStandIn
from tests.support.helpers import queued_ids
from tests.support.samples import CUSTOMER
from tests.support.standins import Reply, StandIn
from workers.jobs import reset_runtime

NOW = datetime.now(UTC).replace(microsecond=0)

def test_durations_and_windows():
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("1d12h") == timedelta(hours=36)
    for bad in ("", "24", "h", "2w", "24h ago"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert window(since="2h", start=None, end=None, now=NOW) == (NOW - timedelta(hours=2), NOW)
    begin, end = window(since=None, start="2026-11-20T00:00:00Z", end="2026-11-21T00:00:00+00:00", now=NOW)
    assert (begin.day, end.day) == (20, 21)
    assert window(since="60d", start=None, end=None, now=NOW)[0] == NOW - timedelta(days=31)  # DT's retention
    for since, start in (("1h", "2026-11-20T00:00:00Z"), (None, None)):
        with pytest.raises(ValueError):
            window(since=since, start=start, end=None, now=NOW)
    with pytest.raises(ValueError, match="zone"):
        window(since=None, start="2026-11-20T00:00:00", end=None, now=NOW)


def test_history_event_is_wrapped_like_a_push():
    event = history_event("dev1", 0)
    device = {
        "name": f"projects/{PROJECT}/devices/dev1",
        "type": "temperature",
        "productNumber": "102081",
        "labels": {"name": "Cold room", "moost_building": "site-42"},
    }
    push = parse_push(wrap_history_event(event, device))
    assert push.event_id == event["eventId"] and push.event_type == "temperature"
    doc = json.loads(wrap_history_event(event, device))
    assert doc["labels"]["name"] == "Cold room"
    assert doc["metadata"] == {
        "deviceId": "dev1",
        "projectId": PROJECT,
        "deviceType": "temperature",
        "productNumber": "102081",
    }
    assert split_device_name("bare") == ("", "bare")
    only_name = json.loads(wrap_history_event(event, device, label_keys=["name", "spot_device_id"]))
    assert only_name["labels"] == {"name": "Cold room"}  # as a live push whose connector names these keys


def history_event(device_id: str, n: int) -> dict:
    """Event ``n`` of ``device_id``, ``n + 1`` minutes old *now* (the tests' windows and ages count
    from the moment the history is made, not from when this module was imported)."""
    at = (datetime.now(UTC) - timedelta(minutes=n + 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "eventId": f"{device_id}e{n:04d}",
        "targetName": f"projects/{PROJECT}/devices/{device_id}",
        "eventType": "temperature",
        "data": {
            "temperature": {
                "value": 20 + n / 100,
                "updateTime": at,
                "samples": [{"value": 20 + n / 100, "sampleTime": at}],
                "isBackfilled": False,
            }
        },
        "timestamp": at,
    }


@pytest.fixture
def dt() -> Iterator[DtStandIn]:
    server = DtStandIn()
    for d in range(3):
        device_id = f"dev{d}"
        server.state.devices.append(
            {
                "name": f"projects/{PROJECT}/devices/{device_id}",
                "type": "temperature",
                "productNumber": "",
                "labels": {"name": f"Room {d}", "moost_building": "b-1"},
            }
        )
        server.state.history[device_id] = [history_event(device_id, n) for n in range(120)]  # newest first
    yield server
    server.close()


@pytest.fixture
def moost() -> Iterator[StandIn]:
    server = StandIn()
    server.script("/auth/token/v1", Reply(200, {"access_token": "tok", "expires_in": 86400}))
    server.script("/events/historical/v1", Reply(200))
    server.script("/events/v1", Reply(201))
    yield server
    server.close()


def test_interrupted_backfill_resumes_and_delivers_every_event_once(
    dt: DtStandIn, moost: StandIn, redis: Redis, redis_server, worker_env, monkeypatch, capsys
):
    for key, value in {
        "MOOST_BASE_URL": moost.url,
        "MOOST_CLIENT_ID": "c",
        "MOOST_CLIENT_SECRET": "moost-secret",
        "MOOST_CUSTOMER_ID": CUSTOMER,
        "MOOST_LIVE_MAX_AGE_S": "3600",
        **dt.env(),
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.destinations == ("moost",)
    # One event already arrived live before the outage ended: backfill must not send it again.
    live = dt.state.history["dev1"][7]
    Enqueuer.from_settings(settings, redis).enqueue(
        live["eventId"], wrap_history_event(live, dt.state.devices[1]), received_at=0.0
    )
    args = argparse.Namespace(since="24h", start=None, end=None, device=None)

    dt.state.fail_history_after = 4  # dev0's 3 pages, dev1's first page, then DT fails
    assert run_backfill(args, dict(os.environ)) == 1
    assert "Run the same command again to resume" in capsys.readouterr().err
    [checkpoint] = redis.keys(f"{CHECKPOINT_PREFIX}*")
    assert redis.hget(checkpoint, "done:dev0") == b"1" and redis.hget(checkpoint, "page:dev1") == b"50"

    dt.state.fail_history_after = None
    requests_before = dt.state.history_requests
    assert run_backfill(args, dict(os.environ)) == 0
    out = capsys.readouterr().out
    assert "done (resumed)" in out
    assert dt.state.history_requests - requests_before == 2 + 3  # dev1's last two pages, then dev2's three
    assert not redis.keys(f"{CHECKPOINT_PREFIX}*")

    ids = queued_ids(redis)
    assert len(ids) == len(set(ids)) == 360
    reset_runtime()
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True, logging_level="ERROR")
    keys = Counter(seen.headers["Idempotency-Key"] for seen in moost.requests if seen.path.startswith("/events/"))
    assert len(keys) == 360 and max(keys.values()) == 1
    historical = [seen for seen in moost.requests if seen.path == "/events/historical/v1"]
    # Events older than MOOST_LIVE_MAX_AGE_S (n >= 59: an hour and more) are stored as history; the
    # younger ones go live, so MOOST's rule engine sees them, like the one that arrived live.
    assert len(historical) == 3 * 61
    assert len([seen for seen in moost.requests if seen.path == "/events/v1"]) == 360 - 3 * 61
    assert historical[0].json()[0]["customerBuildingId"] == "b-1"


def test_backfill_of_one_device_only(dt: DtStandIn, redis: Redis, redis_server, monkeypatch, capsys):
    for key, value in dt.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("DT_SIGNATURE_SECRET", "s" * 32)
    args = argparse.Namespace(since="30m", start=None, end=None, device="dev2")
    assert run_backfill(args, dict(os.environ)) == 0
    ids = queued_ids(redis)
    assert len(ids) == 29 and all(i.startswith("log-dev2e") for i in ids)  # events of the last 30 minutes
    assert "29 queued, 0 already received" in capsys.readouterr().out


def test_backfilled_pushes_carry_the_labels_a_live_push_would(dt: DtStandIn, redis: Redis, redis_server, monkeypatch,
                                                               capsys):  # fmt: skip
    for device in dt.state.devices:
        device["labels"]["owner_email"] = "someone@example.com"  # a label the connector does not forward
    dt.state.connectors["dc9"] = {"name": "dc9", "labels": ["name"], "httpConfig": {"url": "https://x/dt/events"}}
    for key, value in dt.env(DT_CONNECTOR_ID="dc9").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("DT_SIGNATURE_SECRET", "s" * 32)
    args = argparse.Namespace(since="10m", start=None, end=None, device="dev0")
    assert run_backfill(args, dict(os.environ)) == 0
    assert "labels name (Data Connector dc9)" in capsys.readouterr().out
    labels = {json.dumps(json.loads(redis.hget(f"rq:job:{job}", "data"))[2][1]["labels"]) for job in queued_ids(redis)}
    assert labels == {json.dumps({"name": "Room 0"})}

