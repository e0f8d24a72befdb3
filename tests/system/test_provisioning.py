"""From credentials to flowing data: ``setup spot`` and ``setup moost`` against stateful stand-ins that
start empty, then signed pushes of every forwarded type through the receiver and RQ's worker arrive
with no dead letter; labelsChanged keeps the registrations in step."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from connector.cli.main import main
from connector.core.settings import Settings
from connector.web.app import create_app
from tests.support.downstream_standins import MoostStandIn, SpotStandIn
from tests.support.dt_standin import DtStandIn
from tests.support.helpers import push
from tests.support.samples import CLIENT_SECRET, SPOT_KEY, push_of
from workers.translate.mapping import load_mapping

MAPPING = load_mapping()
SPOT_TYPES = sorted(t for t, rule in MAPPING.spot.items() if rule.skip is None and not rule.sync)
MOOST_TYPES = sorted(t for t, rule in MAPPING.moost.items() if rule.skip is None and not rule.sync)
ZURICH = {"moost_zip": "8001", "moost_city": "Zurich", "moost_country_code": "CH", "moost_time_zone": "Europe/Zurich"}
DEVICE_TYPES = ["temperature", "humidity", "contact", "proximity", "touch", "proximityCounter", "touchCounter",
                "waterDetector", "co2", "motion", "deskOccupancy", "ccon"]  # fmt: skip


def device_id(kind: str) -> str:
    return f"dev-{kind.lower()}"


def seed_fleet(dt: DtStandIn) -> None:
    for kind in DEVICE_TYPES:
        labels = {"name": f"{kind} sensor", "moost_building": "site-42", **ZURICH}
        dt.state.devices.append(
            {"name": f"projects/p/devices/{device_id(kind)}", "type": kind, "productNumber": "102150", "labels": labels}
        )


def drain(redis: Redis) -> None:
    queue = Queue("dt-forward", connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)


def pushed(event_type: str, n: int, **overrides: Any) -> bytes:
    from connector.core.events import DT_EVENT_DEVICE_TYPES

    kind = DT_EVENT_DEVICE_TYPES[event_type]
    body = copy.deepcopy(push_of(event_type, event_id=f"evt{n:04d}", device_id=device_id(kind)))
    body["labels"] = {"name": "A sensor", "moost_building": "site-42"}
    body.update(overrides)
    return json.dumps(body).encode()


def test_fresh_accounts_to_zero_dead_letters(
    provision_env: dict[str, str],
    redis: Redis,
    moost_server: MoostStandIn,
    spot_server: SpotStandIn,
    dt_server: DtStandIn,
    capsys: pytest.CaptureFixture[str],
):
    seed_fleet(dt_server)
    assert main(["setup", "spot"]) == 0
    out = capsys.readouterr().out
    assert "create integration 'Disruptive Technologies'" in out and out.count("create event type") == len(SPOT_TYPES)
    assert main(["setup", "moost"]) == 0
    out = capsys.readouterr().out
    assert "create building 'site-42'" in out and "1 building(s) created" in out
    [building] = moost_server.state.buildings.values()
    assert building["zip"] == "8001" and building["timeZoneId"] == "Europe/Zurich"
    registered = {d["id"]: d for d in building["devices"]}
    assert registered["dev-contact"]["type"] == "SWITCH" and registered["dev-temperature"]["type"] == "THERMAL_ZONE"
    assert "dev-motion" not in registered  # nothing a motion sensor measures goes to MOOST

    # Second runs: nothing to change, and they say so.
    assert main(["setup", "spot"]) == 0 and "setup spot: nothing to change" in capsys.readouterr().out
    assert main(["setup", "moost"]) == 0 and "setup moost: nothing to change" in capsys.readouterr().out

    client = create_app(Settings.from_env(os.environ), configure_logs=False).test_client()
    forwarded = sorted(set(SPOT_TYPES) | set(MOOST_TYPES))
    for n, event_type in enumerate(forwarded):
        assert push(client, pushed(event_type, n)).status_code == 200
    drain(redis)

    assert redis.zcard("dt:dead") == 0
    assert spot_server.state.rejected == [] and moost_server.state.rejected == []
    spot_types = {t["id"]: t["name"] for t in spot_server.state.event_types.values()}
    assert sorted(spot_types[e["integration_event_type_id"]][3:] for e in spot_server.state.events) == SPOT_TYPES
    assert sorted(e["type"] for e in moost_server.state.events) == sorted(
        MAPPING.moost[t].type for t in MOOST_TYPES
    )


def test_labels_changed_renames_and_moves_the_device(
    provision_env: dict[str, str],
    redis: Redis,
    moost_server: MoostStandIn,
    spot_server: SpotStandIn,
    dt_server: DtStandIn,
):
    seed_fleet(dt_server)
    moost_server.state.buildings["site-9"] = {
        "customerBuildingId": "site-9", "customerId": moost_server.customer_id, "zip": "10115", "city": "Berlin",
        "countryCode": "DE", "devices": [{"id": "meter-1", "name": "Meter", "product_name": "M",
                                          "vendor_name": "Acme", "type": "SMART_METER"}],
    }  # fmt: skip
    assert main(["setup", "spot"]) == 0 and main(["setup", "moost"]) == 0
    client = create_app(Settings.from_env(os.environ), configure_logs=False).test_client()
    assert push(client, pushed("temperature", 1)).status_code == 200  # Spot creates the device
    drain(redis)

    data = {"added": {}, "modified": {"name": "Cold room", "moost_building": "site-9"}, "removed": []}
    body = pushed("labelsChanged", 2, labels={"name": "Cold room", "moost_building": "site-9"})
    doc = json.loads(body)
    doc["event"]["data"] = data
    doc["metadata"]["deviceType"] = "temperature"
    assert push(client, json.dumps(doc).encode()).status_code == 200
    drain(redis)

    assert redis.zcard("dt:dead") == 0
    buildings = moost_server.state.buildings
    assert "dev-temperature" not in {d["id"] for d in buildings["site-42"]["devices"]}
    moved = {d["id"]: d for d in buildings["site-9"]["devices"]}
    assert moved["dev-temperature"]["name"] == "Cold room" and "meter-1" in moved  # someone else's device stays
    [spot_device] = [d for d in spot_server.state.devices.values() if d["external_id"] == "dev-temperature"]
    assert spot_device["name"] == "Cold room"


def test_events_wait_for_spot_setup_instead_of_being_lost(provision_env: dict[str, str], redis: Redis,
                                                          spot_server: SpotStandIn):  # fmt: skip
    from rq import Retry

    from workers.jobs import forward, reset_runtime

    # Before setup the job is retried later (then dead-lettered, replayable), never skipped.
    assert isinstance(forward("spot", push_of("contact", event_id="w1"), 1.0), Retry)
    assert forward("spot", push_of("batteryStatus", event_id="w2"), 1.0) == "skipped:not-mapped"
    assert main(["setup", "spot"]) == 0
    assert forward("spot", push_of("contact", event_id="w1"), 1.0) == "delivered"
    [event] = spot_server.state.events
    assert event["attributes"]["state"] == "OPEN" and spot_server.state.rejected == []
    # A record lost (Redis replaced) makes events wait for setup again, not vanish.
    [key] = redis.keys("dt:spot:event-types:*")
    redis.hdel(key, "touch")
    reset_runtime()
    assert isinstance(forward("spot", push_of("touch", event_id="w3"), 1.0), Retry)


@pytest.mark.slow
def test_the_commands_as_a_user_runs_them(
    provision_env: dict[str, str], redis: Redis, moost_server: MoostStandIn, spot_server: SpotStandIn,
    dt_server: DtStandIn,
):  # fmt: skip
    """Real processes: setup, doctor and ``dt-connector worker --burst`` (the Procfile's worker)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "connector.cli", *args], env=dict(os.environ),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        for secret in (CLIENT_SECRET, SPOT_KEY, provision_env["DT_SERVICE_ACCOUNT_SECRET"]):
            assert secret not in done.stdout + done.stderr
        return done

    seed_fleet(dt_server)
    assert run("doctor", "--url", "https://app.example/dt/events").returncode == 1  # nothing set up yet
    for command in (("setup", "spot"), ("setup", "moost")):
        done = run(*command)
        assert done.returncode == 0, done.stdout + done.stderr
    doctor = run("doctor", "--url", "https://app.example/dt/events")
    assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr

    client = create_app(Settings.from_env(os.environ), configure_logs=False).test_client()
    forwarded = sorted(set(SPOT_TYPES) | set(MOOST_TYPES))
    for n, event_type in enumerate(forwarded):
        assert push(client, pushed(event_type, n)).status_code == 200
    worker = run("worker", "--burst")
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert redis.zcard("dt:dead") == 0 and spot_server.state.rejected == [] and moost_server.state.rejected == []
    assert len(spot_server.state.events) == len(SPOT_TYPES) and len(moost_server.state.events) == len(MOOST_TYPES)
