"""``setup moost`` against the stateful MOOST stand-in and DT's device list."""

from __future__ import annotations

import os

import pytest
from redis import Redis

from connector.cli.main import main
from connector.cli.setup import moost_tokens
from connector.core.settings import Settings
from tests.support.downstream_standins import MoostStandIn
from tests.support.dt_standin import DtStandIn
from tests.support.samples import CUSTOMER
from workers.moost.api import MoostApi
from workers.moost.devices import DtDevice
from workers.moost.setup import MoostSetup
from workers.translate.mapping import load_mapping

ZURICH = {"moost_zip": "8001", "moost_city": "Zurich", "moost_country_code": "CH"}
THEIRS = {"id": "meter-1", "name": "Meter", "product_name": "M", "vendor_name": "Acme", "type": "SMART_METER"}


def add(dt: DtStandIn, device_id: str, kind: str = "temperature", **labels: str) -> None:
    dt.state.devices.append({"name": f"projects/p/devices/{device_id}", "type": kind, "productNumber": "102150",
                             "labels": labels})  # fmt: skip


def test_blocked_building_is_reported_and_the_rest_done(
    provision_env: dict[str, str], dt_server: DtStandIn, moost_server: MoostStandIn,
    capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    add(dt_server, "dev-1", name="One", moost_building="site-42", **ZURICH)
    add(dt_server, "dev-2", name="Two", moost_building="site-7", moost_zip="8001")
    add(dt_server, "dev-3", name="Three")
    assert main(["setup", "moost", "--dry-run"]) == 1
    assert "dry run, nothing changed" in capsys.readouterr().out and not moost_server.state.buildings
    assert main(["setup", "moost"]) == 1
    captured = capsys.readouterr()
    assert "building 'site-7' is missing and cannot be created: city, country_code unknown" in captured.err
    assert "moost_city, moost_country_code" in captured.err
    assert "device dev-3 not registered: no 'moost_building' label" in captured.out
    assert set(moost_server.state.buildings) == {"site-42"}
    assert [d["id"] for d in moost_server.state.buildings["site-42"]["devices"]] == ["dev-1"]


def test_existing_building_keeps_devices_registered_by_others_even_meanwhile(
    provision_env: dict[str, str], redis: Redis, dt_server: DtStandIn, moost_server: MoostStandIn
):
    add(dt_server, "dev-1", name="One", moost_building="site-1")
    moost_server.state.buildings["site-1"] = {"customerBuildingId": "site-1", "customerId": CUSTOMER, "zip": "8001",
                                              "city": "Zurich", "countryCode": "CH", "devices": [THEIRS]}  # fmt: skip
    tokens = moost_tokens(Settings.from_env(os.environ), redis)
    api = MoostApi(moost_server.url, tokens.require, renew=tokens.renewed)
    setup = MoostSetup(api, redis, load_mapping(), customer_id=CUSTOMER)
    plan = setup.plan([DtDevice.from_api(d) for d in dt_server.state.devices])
    late = {**THEIRS, "id": "meter-2"}
    moost_server.state.buildings["site-1"]["devices"].append(late)  # registered after the plan was read
    setup.apply(plan)
    assert [d["id"] for d in moost_server.state.buildings["site-1"]["devices"]] == ["meter-1", "meter-2", "dev-1"]
    assert not redis.keys("dt:moost:building-lock:*")  # released


def test_refused_credentials_and_missing_dt_access(
    provision_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("MOOST_CLIENT_SECRET", "not-the-secret")
    assert main(["setup", "moost"]) == 1
    err = capsys.readouterr().err
    assert "moost-credentials-rejected (HTTP 401) (check MOOST_CLIENT_ID and MOOST_CLIENT_SECRET)" in err
    assert "not-the-secret" not in err
    monkeypatch.delenv("DT_SERVICE_ACCOUNT_KEY_ID")
    assert main(["setup", "moost"]) == 2
    assert "setup moost reads your devices from DT" in capsys.readouterr().err
