"""labelsChanged through forward(): the MOOST and Spot registrations follow the device's labels."""

from __future__ import annotations

import copy
import time

import pytest
from redis import Redis
from rq import Retry

from connector.cli.main import main
from connector.core import deadletters
from tests.support.downstream_standins import MoostStandIn, SpotStandIn
from tests.support.samples import CUSTOMER, push_of
from tests.support.standins import Reply, StandIn
from workers.deliver.http import ApiError, api_outcome
from workers.jobs import forward, reset_runtime
from workers.translate.pushes import changed_labels

ENTRY = {"id": "dev-temp", "name": "Fridge", "product_name": "102150", "vendor_name": "Disruptive Technologies",
         "type": "THERMAL_ZONE"}  # fmt: skip


def labels_changed(event_id: str, labels: dict[str, str], **data: object) -> dict[str, object]:
    body = copy.deepcopy(push_of("labelsChanged", event_id=event_id, device_id="dev-temp", labels=labels))
    body["event"]["data"] = {"added": {}, "modified": {}, "removed": [], **data}
    return body


def building(moost: MoostStandIn, building_id: str, *devices: dict[str, str]) -> None:
    moost.state.buildings[building_id] = {"customerBuildingId": building_id, "customerId": CUSTOMER, "zip": "8001",
                                          "city": "Zurich", "countryCode": "CH", "devices": list(devices)}  # fmt: skip


def test_changed_labels_applies_the_event_to_the_pushed_labels():
    body = labels_changed("x", {"name": "Old", "room": "1"}, added={"floor": "2"}, modified={"name": "New"},
                          removed=["room"])  # fmt: skip
    assert changed_labels(body) == ({"name": "New", "floor": "2"}, {"floor", "name", "room"})


def test_other_labels_are_skipped(provision_env: dict[str, str], moost_server: MoostStandIn):
    body = labels_changed("s1", {"name": "Fridge"}, added={"room": "3.14"})
    assert forward("moost", body, 1.0) == "skipped:labels-not-used"
    assert forward("spot", body, 1.0) == "skipped:labels-not-used"
    assert moost_server.state.device_set_puts == []


def test_a_removed_building_label_unregisters_the_device(provision_env: dict[str, str], moost_server: MoostStandIn):
    building(moost_server, "site-1", ENTRY)
    body = labels_changed("u1", {"name": "Fridge"}, removed=["moost_building"])
    assert forward("moost", body, 1.0) == "delivered"
    assert moost_server.state.buildings["site-1"]["devices"] == []


def test_a_new_building_without_details_is_a_dead_letter_with_the_reason(
    provision_env: dict[str, str], redis: Redis, moost_server: MoostStandIn
):
    building(moost_server, "site-1", ENTRY)
    labels = {"name": "Fridge", "moost_building": "site-new"}
    body = labels_changed("b1", labels, modified={"moost_building": "site-new"})
    assert forward("moost", body, 1.0) == "dead-letter:moost-building-missing"
    [letter] = deadletters.list_dead(redis)
    assert "site-new" in letter.excerpt and "moost_city" in letter.excerpt
    details = {"moost_zip": "3000", "moost_city": "Bern", "moost_country_code": "CH"}
    with_details = labels_changed("b2", labels, modified={"moost_building": "site-new"}, added=details)
    assert forward("moost", with_details, 1.0) == "delivered"
    assert moost_server.state.buildings["site-new"]["city"] == "Bern"
    assert [d["id"] for d in moost_server.state.buildings["site-new"]["devices"]] == ["dev-temp"]


def test_spot_waits_for_setup_and_skips_devices_it_does_not_have(
    provision_env: dict[str, str], spot_server: SpotStandIn
):
    body = labels_changed("p1", {"name": "Cold"}, modified={"name": "Cold"})
    assert isinstance(forward("spot", body, 1.0), Retry)
    assert main(["setup", "spot"]) == 0
    assert forward("spot", body, 1.0) == "skipped:no-spot-device"
    [integration] = spot_server.state.integrations
    spot_server.state.devices[999] = {"id": 999, "integration_id": integration, "name": "x", "external_id": "other",
                                      "tags": [], "camera_ids": []}  # fmt: skip
    by_label = labels_changed("p2", {"name": "Cold", "spot_device_id": "999"}, added={"spot_device_id": "999"})
    assert forward("spot", by_label, 1.0) == "delivered"
    assert spot_server.state.devices[999]["name"] == "Cold"


def test_a_stalled_moost_cannot_hold_the_job_past_its_deadline(
    moost_env: StandIn, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("JOB_TIMEOUT_S", "3")
    reset_runtime()
    moost_env.script("/buildings/v1", Reply(200, [], delay_s=10))
    body = labels_changed("d1", {"name": "Slow"}, modified={"name": "Slow"})
    started = time.monotonic()
    assert isinstance(forward("moost", body, 1.0), Retry)
    assert time.monotonic() - started < 3  # the job's timeout; the stand-in would have held it 10 s


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [(None, "retry", "moost-unreachable"), (429, "retry", "http-429"), (503, "retry", "http-503"),
     (400, "failed", "http-400"), (404, "failed", "http-404")],
)  # fmt: skip
def test_management_errors_follow_the_delivery_rules(status: int | None, kind: str, reason: str):
    outcome = api_outcome(ApiError("MOOST GET /buildings/v1: HTTP x", status), "moost", now=0.0)
    assert (outcome.kind, outcome.reason, outcome.status) == (kind, reason, status)


def test_a_revoked_shared_token_is_renewed_once(provision_env: dict[str, str], redis: Redis,
                                                moost_server: MoostStandIn):  # fmt: skip
    building(moost_server, "site-1", ENTRY)
    redis.set("dt:moost:token", "revoked-token", ex=600)
    body = labels_changed("t1", {"name": "Renamed", "moost_building": "site-1"}, modified={"name": "Renamed"})
    assert forward("moost", body, 1.0) == "delivered"
    assert moost_server.state.buildings["site-1"]["devices"][0]["name"] == "Renamed"
    assert redis.get("dt:moost:token") not in (None, b"revoked-token")
    assert moost_server.state.tokens_issued == 1
