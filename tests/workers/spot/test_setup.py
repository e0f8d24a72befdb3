"""``setup spot`` against the stateful Spot stand-in: find or create, update only what differs, record ids
where the workers read them, dry runs and mapping overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from connector.cli.main import main
from tests.support.downstream_standins import SpotStandIn
from workers.spot import ids as spot_ids
from workers.spot.schema import attributes_schema, event_type_body, forwarded_to_spot
from workers.spot.setup import plan_event_types
from workers.translate.mapping import DEFAULT_MAPPING_PATH, load_mapping

MAPPING = load_mapping()


def test_plan_finds_by_recorded_id_then_by_name():
    body = event_type_body("touch", MAPPING.spot["touch"], MAPPING, [])
    existing = [{"id": 5, **body}, {"id": 6, **event_type_body("co2", MAPPING.spot["co2"], MAPPING, []), "name": "x"}]
    steps = {s.event_type: s for s in plan_event_types(MAPPING, label_keys=[], existing=existing,
                                                       recorded={"co2": 6})}  # fmt: skip
    assert (steps["touch"].action, steps["touch"].type_id, steps["touch"].source) == ("unchanged", 5, "name")
    assert (steps["co2"].action, steps["co2"].changed, steps["co2"].source) == ("update", ("name",), "recorded")
    assert steps["motion"].action == "create" and steps["motion"].type_id == 0
    assert set(steps) == set(forwarded_to_spot(MAPPING))


def test_second_run_changes_nothing_and_says_so(
    provision_env: dict[str, str], redis: Redis, spot_server: SpotStandIn, capsys: pytest.CaptureFixture[str]
):
    assert main(["setup", "spot", "--dry-run"]) == 0
    assert "dry run, nothing changed" in capsys.readouterr().out and not spot_server.state.integrations
    assert main(["setup", "spot"]) == 0
    capsys.readouterr()
    integration = spot_ids.recorded_integration(redis)
    recorded = spot_ids.recorded_event_types(redis, integration)
    assert set(recorded) == set(forwarded_to_spot(MAPPING))
    assert {t["id"] for t in spot_server.state.event_types.values()} == set(recorded.values())
    seen = len(spot_server.state.requests_seen)
    assert main(["setup", "spot"]) == 0
    out = capsys.readouterr().out
    assert "nothing to change" in out and out.count("is up to date") == len(recorded)
    assert all(method == "GET" for method, _ in spot_server.state.requests_seen[seen:])


def test_stale_schema_is_updated_and_an_existing_integration_found(
    provision_env: dict[str, str], redis: Redis, spot_server: SpotStandIn, capsys: pytest.CaptureFixture[str]
):
    integration = spot_server.add_integration("Disruptive Technologies")
    stale = spot_server.add_event_type(integration, "DT temperature", attributes_schema("temperature", []))
    assert main(["setup", "spot"]) == 0
    out = capsys.readouterr().out
    assert f"integration {integration} 'Disruptive Technologies' (found by name)" in out
    assert f"update event type {stale} 'DT temperature' (schema, external_device_id_template)" in out
    assert "label_moost_building" in spot_server.state.event_types[stale]["schema"]["properties"]
    assert spot_ids.recorded_event_types(redis, integration)["temperature"] == stale
    assert len(spot_server.state.integrations) == 1


def test_mapping_ids_are_used_and_a_missing_one_fails(
    provision_env: dict[str, str], redis: Redis, spot_server: SpotStandIn, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    integration = spot_server.add_integration("mine")
    mine = spot_server.add_event_type(integration, "my touch", {"type": "object"})
    text = DEFAULT_MAPPING_PATH.read_text()
    text = text.replace("[events.touch.spot]\nevent_type_id = 0", f"[events.touch.spot]\nevent_type_id = {mine}")
    text = text.replace("[events.co2.spot]\nevent_type_id = 0", "[events.co2.spot]\nevent_type_id = 9999")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(text)
    monkeypatch.setenv("CONNECTOR_MAPPING", str(mapping))
    monkeypatch.setenv("SPOT_INTEGRATION_ID", str(integration))
    assert main(["setup", "spot"]) == 1
    captured = capsys.readouterr()
    assert f"update event type {mine} 'DT touch'" in captured.out
    assert "event type 9999 (the mapping's events.co2.spot.event_type_id) is missing" in captured.err
    assert redis.get("dt:spot:integration") is None  # the configured integration is not recorded over


def test_unknown_configured_integration_is_refused(
    provision_env: dict[str, str], spot_server: SpotStandIn, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    monkeypatch.setenv("SPOT_INTEGRATION_ID", "4242")
    assert main(["setup", "spot"]) == 1
    assert "SPOT_INTEGRATION_ID=4242: Spot AI has no such integration" in capsys.readouterr().err
    assert not spot_server.state.event_types


def test_a_refused_api_key_is_reported_without_the_key(
    provision_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("SPOT_API_KEY", "wrong-key-0123456789")
    assert main(["setup", "spot"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "wrong-key" not in err
