"""The MOOST and Spot AI stand-ins keep their documented contracts (downstream-apis.md §1.2-1.7, §2.3-2.7).

Real HTTP through ``requests``: each endpoint's main path, its documented error statuses, Spot's attribute
validation (422 with ``details``), device resolution and cursor paging, and the ``fail_next`` hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.downstream_standins import MoostStandIn, SpotStandIn

CUSTOMER = "656730be2bc9719e6e5ed51d"
BUILDING = {
    "customerId": CUSTOMER,
    "customerBuildingId": "site-42",
    "zip": "8001",
    "city": "Zurich",
    "countryCode": "CH",
}
DEVICE = {
    "id": "dt-abc123",
    "type": "THERMAL_ZONE",
    "name": "Room 1",
    "product_name": "DT Temperature",
    "vendor_name": "Disruptive Technologies",
}
EVENT = {
    "timestamp": 1727992800,
    "customerId": CUSTOMER,
    "customerBuildingId": "site-42",
    "deviceId": "dt-abc123",
    "deviceName": "Room 1",
    "source": "THERMAL_ZONE",
    "type": "TEMPERATURE",
    "value": 21.4,
}
SCHEMA = {
    "type": "object",
    "properties": {"temperature_c": {"type": "number"}, "sensor_id": {"type": "string"}},
    "required": ["temperature_c", "sensor_id"],
}


@pytest.fixture
def moost() -> Iterator[MoostStandIn]:
    standin = MoostStandIn()
    yield standin
    standin.close()


@pytest.fixture
def spot() -> Iterator[SpotStandIn]:
    standin = SpotStandIn()
    yield standin
    standin.close()


def moost_session(moost: MoostStandIn) -> requests.Session:
    reply = requests.get(
        f"{moost.url}/auth/token/v1",
        params={"clientId": "client1", "clientSecret": "moost-secret-do-not-log-0123456789"},
        timeout=5,
    )
    assert reply.status_code == 200
    token = reply.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 86400
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    return session


def spot_session(spot: SpotStandIn) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer spot-key-do-not-log-0123456789abcdef"
    return session


# ---- MOOST ----------------------------------------------------------------------------------------------------------


def test_moost_token_and_auth(moost: MoostStandIn) -> None:
    wrong = requests.get(f"{moost.url}/auth/token/v1", params={"clientId": "client1", "clientSecret": "x"}, timeout=5)
    assert (wrong.status_code, wrong.json()) == (401, {"code": "401", "message": "invalid client"})
    assert requests.get(f"{moost.url}/buildings/v1", timeout=5).status_code == 401
    bogus = requests.get(f"{moost.url}/buildings/v1", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bogus.status_code == 401

    session = moost_session(moost)
    reply = session.get(f"{moost.url}/buildings/v1", timeout=5)
    assert (reply.status_code, reply.json()) == (200, [])
    assert reply.headers["Content-Length"] == str(len(reply.content))
    assert moost.state.tokens_issued == 1
    assert moost.state.requests_seen[-1] == ("GET", "/buildings/v1")
    assert "secret" not in repr(moost) and "secret" not in repr(moost.state)

    moost.state.tokens.clear()  # as if the token had expired
    assert session.get(f"{moost.url}/buildings/v1", timeout=5).status_code == 401


def test_moost_buildings_and_device_sets(moost: MoostStandIn) -> None:
    session = moost_session(moost)
    created = session.post(f"{moost.url}/buildings/v1", json=BUILDING, timeout=5)
    assert created.status_code == 201
    building_id = created.json()["id"]
    assert len(building_id) == 24 and created.json()["devices"] == []
    assert session.post(f"{moost.url}/buildings/v1", json=BUILDING, timeout=5).status_code == 409

    invalid = session.post(
        f"{moost.url}/buildings/v1",
        json={**BUILDING, "customerBuildingId": "a/b", "zip": "ab", "countryCode": "che", "city": ""},
        timeout=5,
    )
    assert invalid.status_code == 400
    assert set(invalid.json()) == {"customerBuildingId", "zip", "countryCode", "city"}
    other_customer = session.post(f"{moost.url}/buildings/v1", json={**BUILDING, "customerId": "a" * 24}, timeout=5)
    assert (other_customer.status_code, list(other_customer.json())) == (400, ["customerId"])
    bad_device = session.post(
        f"{moost.url}/buildings/v1", json={**BUILDING, "customerBuildingId": "b2", "devices": [{"id": "x"}]}, timeout=5
    )
    assert bad_device.status_code == 400 and "devices[0].id" in bad_device.json()

    updated = session.put(f"{moost.url}/buildings/v1", json={**BUILDING, "city": "Bern"}, timeout=5)
    assert updated.status_code == 200 and updated.json()["id"] == building_id and updated.json()["city"] == "Bern"
    unknown = {**BUILDING, "customerBuildingId": "nowhere"}
    assert session.put(f"{moost.url}/buildings/v1", json=unknown, timeout=5).status_code == 404

    devices_url = f"{moost.url}/buildings/site-42/devices/v1"
    assert session.put(devices_url, json=[DEVICE], timeout=5).status_code == 200
    second = {**DEVICE, "id": "dt-def456"}
    replaced = session.put(devices_url, json=[second], timeout=5)
    assert replaced.json()["devices"] == [second]  # the whole set is replaced
    wrong_type = session.put(devices_url, json=[{**DEVICE, "type": "HUMIDITY"}], timeout=5)
    assert (wrong_type.status_code, wrong_type.json()) == (400, {"[0].type": "must be one of MOOST's device types"})
    assert session.put(f"{moost.url}/buildings/nowhere/devices/v1", json=[DEVICE], timeout=5).status_code == 404
    assert [building for building, _ in moost.state.device_set_puts] == ["site-42"] * 3 + ["nowhere"]

    one = session.get(f"{moost.url}/buildings/site-42/v1", timeout=5)
    assert one.status_code == 200 and one.json()["devices"] == [second]
    assert [b["customerBuildingId"] for b in session.get(f"{moost.url}/buildings/v1", timeout=5).json()] == ["site-42"]
    assert session.get(f"{moost.url}/buildings/nowhere/v1", timeout=5).status_code == 404
    assert session.delete(f"{moost.url}/buildings/site-42/v1", timeout=5).status_code == 200
    assert session.delete(f"{moost.url}/buildings/site-42/v1", timeout=5).status_code == 404
    assert moost.state.buildings == {}


def test_moost_events_and_historical(moost: MoostStandIn) -> None:
    session = moost_session(moost)
    unknown = session.post(f"{moost.url}/events/v1", json=EVENT, timeout=5)
    assert (unknown.status_code, unknown.json()) == (400, {"customerBuildingId": "unknown building"})
    session.post(f"{moost.url}/buildings/v1", json=BUILDING, timeout=5)

    accepted = session.post(f"{moost.url}/events/v1", json=EVENT, timeout=5)
    assert accepted.status_code == 201
    assert moost.state.events == [EVENT]
    for wrong in ({"customerId": "b" * 24}, {"type": "HUMIDITY"}, {"value": "21.4"}, {"deviceId": "x"}):
        reply = session.post(f"{moost.url}/events/v1", json={**EVENT, **wrong}, timeout=5)
        assert (reply.status_code, list(reply.json())) == (400, list(wrong))

    batch = [EVENT, {**EVENT, "timestamp": 1727994600, "value": 21.9}]
    assert session.post(f"{moost.url}/events/historical/v1", json=batch, timeout=5).status_code == 200
    assert moost.state.historical == batch
    half_bad = [EVENT, {**EVENT, "customerBuildingId": "nowhere"}]
    rejected = session.post(f"{moost.url}/events/historical/v1", json=half_bad, timeout=5)
    assert (rejected.status_code, rejected.json()) == (400, {"[1].customerBuildingId": "unknown building"})
    assert session.post(f"{moost.url}/events/historical/v1", json=EVENT, timeout=5).status_code == 400
    assert moost.state.historical == batch  # nothing of a rejected batch is stored
    assert len(moost.state.rejected) == 7


def test_moost_fail_next(moost: MoostStandIn) -> None:
    moost.state.fail_next = [503, 500]
    url = f"{moost.url}/auth/token/v1?clientId=client1&clientSecret=moost-secret-do-not-log-0123456789"
    first, second, third = (requests.get(url, timeout=5) for _ in range(3))
    assert [(r.status_code, r.json()) for r in (first, second)] == [(503, {}), (500, {})]
    assert third.status_code == 200 and moost.state.rejected == []
    assert moost.state.requests_seen == [("GET", "/auth/token/v1")] * 3


# ---- Spot AI --------------------------------------------------------------------------------------------------------


def make_event_type(session: requests.Session, spot: SpotStandIn, integration_id: int, **body: Any) -> dict[str, Any]:
    reply = session.post(
        f"{spot.url}/v1/integrations/{integration_id}/event-types",
        json={"name": "DT temperature", "schema": SCHEMA, **body},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    event_type: dict[str, Any] = reply.json()["integration_event_type"]
    return event_type


def test_spot_auth_and_integrations(spot: SpotStandIn) -> None:
    denied = requests.get(f"{spot.url}/v1/integrations", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert (denied.status_code, denied.json()) == (401, {"name": "Unauthorized", "message": "invalid API key"})
    assert "spot-key" not in repr(spot)

    session = spot_session(spot)
    created = session.post(f"{spot.url}/v1/integrations", json={"name": "dt-connector"}, timeout=5)
    assert created.status_code == 200
    assert created.json() == {"integration": {"id": 101, "name": "dt-connector", "integration_type": "custom"}}
    too_long = session.post(
        f"{spot.url}/v1/integrations", json={"name": "x" * 41, "integration_type": "pos"}, timeout=5
    )
    assert too_long.status_code == 422
    assert too_long.json()["name"] == "ValidationError" and too_long.json()["details"][0]["field"] == "name"
    assert session.get(f"{spot.url}/v1/integrations/101", timeout=5).json()["integration"]["name"] == "dt-connector"
    assert len(session.get(f"{spot.url}/v1/integrations", timeout=5).json()["integrations"]) == 1
    assert session.get(f"{spot.url}/v1/integrations/999", timeout=5).status_code == 404
    assert spot.state.rejected == [too_long.json()]


def test_spot_event_types_validation_and_crud(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    integration_id = spot.add_integration()
    base = f"{spot.url}/v1/integrations/{integration_id}/event-types"
    event_type = make_event_type(
        session, spot, integration_id, duration=60000, external_device_id_template="{sensor_id}"
    )
    assert event_type["integration_id"] == integration_id and event_type["buffer"] is None

    invalid_bodies = {
        "schema": {"name": "t", "schema": {"type": 5}},  # not a JSON Schema
        "schema.type": {"name": "t", "schema": {"type": "array"}},
        "duration": {"name": "t", "schema": SCHEMA, "duration": 600001},
        "external_device_id_template": {"name": "t", "schema": SCHEMA, "external_device_id_template": "{room}"},
    }
    for field_name, body in invalid_bodies.items():
        reply = session.post(base, json=body, timeout=5)
        assert reply.status_code == 422, field_name
        assert reply.json()["details"][0]["field"].startswith(field_name)
    for template in ("", "fixed"):
        body = {"name": "t", "schema": SCHEMA, "external_device_id_template": template}
        assert session.post(base, json=body, timeout=5).status_code == 422
    assert session.post(base, json={"schema": SCHEMA}, timeout=5).json()["details"] == [
        {"field": "name", "message": "is required"}
    ]
    assert session.post(f"{spot.url}/v1/integrations/999/event-types", json={}, timeout=5).status_code == 404

    one = f"{base}/{event_type['id']}"
    assert session.get(one, timeout=5).json()["integration_event_type"] == event_type
    replaced = session.put(one, json={"name": "renamed", "schema": SCHEMA}, timeout=5)
    assert replaced.status_code == 200
    assert replaced.json()["integration_event_type"]["external_device_id_template"] is None
    assert session.get(f"{base}/999", timeout=5).status_code == 404

    ingest = {
        "integration_event_type_id": event_type["id"],
        "device_external_id": "dt-1",
        "timestamp": "2024-01-15T10:30:00Z",
        "attributes": {"temperature_c": 21.4, "sensor_id": "s1"},
    }
    assert session.post(f"{spot.url}/v1/integrations/{integration_id}/events", json=ingest, timeout=5).ok
    assert session.delete(one, timeout=5).status_code == 200
    assert spot.state.events == [] and session.get(one, timeout=5).status_code == 404


def test_spot_event_type_cursor_paging(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    integration_id = spot.add_integration()
    ids = [make_event_type(session, spot, integration_id, name=f"type {n}")["id"] for n in range(5)]
    url = f"{spot.url}/v1/integrations/{integration_id}/event-types"

    seen: list[int] = []
    page = session.get(url, params={"limit": 2}, timeout=5).json()
    assert page["prev"] is None
    while True:
        seen += [t["id"] for t in page["integration_event_types"]]
        if page["next"] is None:
            break
        page = session.get(url, params={"limit": 2, "cursor": page["next"]}, timeout=5).json()
        assert page["prev"] is not None
    assert seen == ids
    back = session.get(url, params={"limit": 2, "cursor": page["prev"]}, timeout=5).json()
    assert [t["id"] for t in back["integration_event_types"]] == ids[2:4]
    assert len(session.get(url, timeout=5).json()["integration_event_types"]) == 5  # default limit 50

    assert session.get(url, params={"limit": 101}, timeout=5).status_code == 422
    assert session.get(url, params={"cursor": "not-a-cursor"}, timeout=5).status_code == 422


def test_spot_devices(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    integration_id = spot.add_integration()
    base = f"{spot.url}/v1/integrations/{integration_id}/devices"
    created = session.post(base, json={"name": "Room 1", "camera_ids": [1, 2], "external_id": "dt-1"}, timeout=5)
    assert created.status_code == 200
    device = created.json()["integration_device"]
    assert device == {
        "id": 102,
        "integration_id": integration_id,
        "name": "Room 1",
        "external_id": "dt-1",
        "tags": [],
        "camera_ids": [1, 2],
    }
    duplicate = session.post(base, json={"name": "again", "camera_ids": [], "external_id": "dt-1"}, timeout=5)
    assert duplicate.status_code == 422 and duplicate.json()["details"][0]["field"] == "external_id"
    assert session.post(base, json={"name": "many", "camera_ids": [1, 2, 3, 4, 5]}, timeout=5).status_code == 422

    updated = session.put(f"{base}/{device['id']}", json={"name": "Room one", "tags": ["dt"]}, timeout=5)
    assert updated.json()["integration_device"]["tags"] == ["dt"]
    assert session.put(f"{base}/{device['id']}", json={"name": ""}, timeout=5).status_code == 422
    assert session.get(f"{base}/{device['id']}", timeout=5).json()["integration_device"]["name"] == "Room one"
    assert session.get(f"{base}/999", timeout=5).status_code == 404
    listed = session.get(base, params={"limit": 1}, timeout=5).json()
    assert [d["id"] for d in listed["integration_devices"]] == [device["id"]] and listed["next"] is None


def test_spot_ingest_validation_and_device_resolution(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    integration_id = spot.add_integration()
    event_type_id = spot.add_event_type(
        integration_id,
        "DT temperature",
        SCHEMA,
        duration=60000,
        buffer=10000,
        external_device_id_template="dt-{sensor_id}",
    )
    url = f"{spot.url}/v1/integrations/{integration_id}/events"
    event = {
        "integration_event_type_id": event_type_id,
        "timestamp": "2024-01-15T10:30:00.123Z",
        "attributes": {"temperature_c": 21.4, "sensor_id": "bchonol5u3fgcbbuhcd0"},
    }

    by_template = session.post(url, json=event, timeout=5)
    assert (by_template.status_code, by_template.content) == (202, b"")
    [device] = spot.state.devices.values()
    assert device["external_id"] == "dt-bchonol5u3fgcbbuhcd0" and device["name"] == "dt-bchonol5u3fgcbbuhcd0"
    assert spot.state.events[0] == {
        "integration_event_type_id": event_type_id,
        "integration_device_id": device["id"],
        "timestamp": "2024-01-15T10:30:00.123Z",
        "attributes": event["attributes"],
        "duration": 60000,
        "buffer": 10000,
    }
    assert session.post(url, json={**event, "device_external_id": "dt-bchonol5u3fgcbbuhcd0"}, timeout=5).ok
    assert session.post(url, json={**event, "integration_device_id": device["id"], "duration": 0}, timeout=5).ok
    assert len(spot.state.devices) == 1 and len(spot.state.events) == 3
    assert spot.state.events[2]["duration"] == 0

    schema_break = session.post(
        url, json={**event, "attributes": {"temperature_c": "warm", "sensor_id": "x"}}, timeout=5
    )
    assert schema_break.status_code == 422
    assert schema_break.json()["details"] == [
        {"field": "attributes.temperature_c", "message": "'warm' is not of type 'number'", "value": "warm"}
    ]
    wrong = {
        "integration_device_id": 999,
        "integration_event_type_id": 999,
        "timestamp": "15/01/2024 10:30",
        "duration": 600001,
        "buffer": 120001,
    }
    for name, value in wrong.items():
        reply = session.post(url, json={**event, name: value}, timeout=5)
        assert reply.status_code == 422 and reply.json()["details"][0]["field"] == name, name
    missing = session.post(url, json={"timestamp": event["timestamp"]}, timeout=5)
    assert {d["field"] for d in missing.json()["details"]} == {"integration_event_type_id", "attributes"}

    plain_type = spot.add_event_type(integration_id, "no template", SCHEMA)
    no_device = session.post(url, json={**event, "integration_event_type_id": plain_type}, timeout=5)
    assert no_device.status_code == 400
    assert len(spot.state.events) == 3 and len(spot.state.rejected) == 8
    assert spot.state.requests_seen[0] == ("POST", f"/v1/integrations/{integration_id}/events")


def test_spot_import_is_all_or_nothing(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    integration_id = spot.add_integration()
    event_type_id = spot.add_event_type(integration_id, "DT temperature", SCHEMA)
    device_id = session.post(
        f"{spot.url}/v1/integrations/{integration_id}/devices", json={"name": "Room 1", "camera_ids": []}, timeout=5
    ).json()["integration_device"]["id"]
    url = f"{spot.url}/v1/integrations/{integration_id}/events/import"
    item = {
        "integration_device_id": device_id,
        "integration_event_type_id": event_type_id,
        "timestamp": "2024-01-15T10:30:00Z",
        "attributes": {"temperature_c": 21.4, "sensor_id": "s1"},
    }

    assert session.post(url, json={"integration_events": [item, item]}, timeout=5).status_code == 202
    assert len(spot.state.events) == 2
    bad = {**item, "attributes": {"temperature_c": 21.4}}
    rejected = session.post(url, json={"integration_events": [item, bad]}, timeout=5)
    assert rejected.status_code == 422
    assert rejected.json()["details"][0]["field"] == "integration_events[1].attributes.sensor_id"
    unknown_device = session.post(url, json={"integration_events": [{**item, "integration_device_id": 999}]}, timeout=5)
    assert unknown_device.status_code == 422
    assert session.post(url, json={"integration_events": []}, timeout=5).status_code == 422
    without_device = {k: v for k, v in item.items() if k != "integration_device_id"}
    assert session.post(url, json={"integration_events": [without_device]}, timeout=5).status_code == 422
    assert len(spot.state.events) == 2


def test_spot_fail_next(spot: SpotStandIn) -> None:
    session = spot_session(spot)
    spot.state.fail_next = [429]
    throttled = session.get(f"{spot.url}/v1/integrations", timeout=5)
    assert (throttled.status_code, throttled.json()) == (429, {})
    assert session.get(f"{spot.url}/v1/integrations", timeout=5).status_code == 200
