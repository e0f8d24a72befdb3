"""``dt-connector doctor`` against live stand-ins: a healthy deployment passes, and each seeded
misconfiguration is named with its fix and fails the run."""

from __future__ import annotations

import pytest
from redis import Redis

from connector.cli.main import main
from tests.support.downstream_standins import MoostStandIn, SpotStandIn
from tests.support.dt_standin import DtStandIn
from tests.support.samples import SPOT_KEY

URL = "https://app.example/dt/events"
ZURICH = {"moost_zip": "8001", "moost_city": "Zurich", "moost_country_code": "CH"}


@pytest.fixture
def deployed(provision_env: dict[str, str], dt_server: DtStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment after ``setup spot`` and ``setup moost``, with two devices in site-42."""
    for n in (1, 2):
        labels = {"name": f"T{n}", "moost_building": "site-42", **ZURICH}
        device = {"name": f"projects/p/devices/dev-{n}", "type": "temperature", "productNumber": "1", "labels": labels}
        dt_server.state.devices.append(device)
    assert main(["setup", "spot"]) == 0 and main(["setup", "moost"]) == 0
    capsys.readouterr()


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["doctor", *args])
    return status, capsys.readouterr().out


def lines(out: str, level: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(level)]


def test_a_healthy_deployment_passes(deployed: None, capsys: pytest.CaptureFixture[str]):
    status, out = doctor(capsys, "--url", URL)
    assert status == 0, out
    assert lines(out, "FAIL") == [] and lines(out, "warn") == []
    assert f"Data Connector dc001 pushes to {URL}" in out
    assert "the credentials get a token for customer" in out
    assert "1 building(s) exist and list their 2 device(s)" in out
    assert "12 event type(s) exist with the schemas setup writes" in out


def test_missing_building_is_reported_with_setup_moost(deployed: None, moost_server: MoostStandIn,
                                                       capsys: pytest.CaptureFixture[str]):  # fmt: skip
    del moost_server.state.buildings["site-42"]
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    [fail] = lines(out, "FAIL")
    assert "building 'site-42' does not exist: events of its 2 device(s) are refused" in fail
    assert "fix: dt-connector setup moost" in out


def test_stale_event_type_schema_is_reported(deployed: None, spot_server: SpotStandIn,
                                             capsys: pytest.CaptureFixture[str]):  # fmt: skip
    [temperature] = [t for t in spot_server.state.event_types.values() if t["name"] == "DT temperature"]
    temperature["schema"] = {"type": "object", "properties": {"temperature_c": {"type": "string"}},
                             "required": ["temperature_c"]}  # fmt: skip
    [co2] = [t for t in spot_server.state.event_types.values() if t["name"] == "DT co2"]
    co2["schema"] = {"type": "object"}  # accepts everything: differs, loses nothing
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    [fail] = lines(out, "FAIL")
    assert "temperature: event type" in fail and "schema rejects what the connector sends" in fail
    assert "is not of type 'string'" in fail
    [warn] = lines(out, "warn")
    assert "event types of co2 accept what is sent but differ" in warn


def test_wrong_connector_url_and_missing_labels(deployed: None, dt_server: DtStandIn,
                                                capsys: pytest.CaptureFixture[str]):  # fmt: skip
    dt_server.state.connectors["dc001"]["httpConfig"]["url"] = "https://old-app.example/dt/events"
    dt_server.state.connectors["dc001"]["labels"] = ["name"]
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    assert f"pushes to https://old-app.example/dt/events, not to {URL}" in out
    assert f"fix: dt-connector connector update --connector dc001 --url {URL}" in out
    assert "does not forward label(s) moost_building, spot_device_id" in out


def test_heroku_domain_gives_the_url(deployed: None, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]):  # fmt: skip
    monkeypatch.setenv("HEROKU_APP_DEFAULT_DOMAIN_NAME", "other.herokuapp.com")
    status, out = doctor(capsys)
    assert status == 1 and "not to https://other.herokuapp.com/dt/events" in out


def test_bad_credentials_everywhere(deployed: None, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]):  # fmt: skip
    monkeypatch.setenv("MOOST_CLIENT_SECRET", "wrong-moost-secret")
    monkeypatch.setenv("SPOT_API_KEY", "wrong-spot-key-0123456789")
    monkeypatch.setenv("DT_SERVICE_ACCOUNT_SECRET", "wrong-dt-secret-0123456789abcdef")
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    fails = lines(out, "FAIL")
    assert any("service account cannot read project" in f for f in fails)
    assert any("MOOST refuses the client credentials (401)" in f for f in fails)
    assert any(f.startswith("FAIL  Spot") and "HTTP 401" in f for f in fails)
    for secret in ("wrong-moost-secret", "wrong-spot-key", "wrong-dt-secret", SPOT_KEY):
        assert secret not in out


def test_spot_not_set_up_fails(provision_env: dict[str, str], redis: Redis, capsys: pytest.CaptureFixture[str]):
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    assert "no integration: SPOT_INTEGRATION_ID is unset and setup has not run" in out


def test_credentials_of_another_customer(deployed: None, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]):  # fmt: skip
    monkeypatch.setenv("MOOST_CUSTOMER_ID", "aaaaaaaaaaaaaaaaaaaaaaaa")
    status, out = doctor(capsys, "--url", URL)
    assert status == 1
    assert "the credentials are for customer 656730be2bc9719e6e5ed51d, not MOOST_CUSTOMER_ID" in out
