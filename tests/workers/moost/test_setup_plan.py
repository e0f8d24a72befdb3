"""What a DT device is to MOOST, and the plan ``setup moost`` makes from DT's device list. Pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.support.samples import CUSTOMER
from workers.moost.devices import DtDevice, building_body, merged_devices, moost_device
from workers.moost.setup import plan_buildings
from workers.translate.mapping import load_mapping

MAPPING = load_mapping()
ZURICH = {"moost_zip": "8001", "moost_city": "Zurich", "moost_country_code": "ch"}


def dt_device(device_id: str, kind: str = "temperature", product: str = "102150", **labels: str) -> dict[str, Any]:
    return {"name": f"projects/p1/devices/{device_id}", "type": kind, "productNumber": product, "labels": labels}


def device(device_id: str, kind: str = "temperature", product: str = "102150", **labels: str) -> DtDevice:
    return DtDevice.from_api(dt_device(device_id, kind, product, **labels))


def test_device_entry_follows_moost_device():
    entry = moost_device(device("bchonod7rihjtvdmd2vg", name="Fridge 3", moost_building="site-42"), MAPPING)
    assert entry == {
        "id": "bchonod7rihjtvdmd2vg",
        "name": "Fridge 3",
        "product_name": "102150",
        "vendor_name": "Disruptive Technologies",
        "type": "THERMAL_ZONE",
    }


def test_device_type_comes_from_what_it_measures():
    assert moost_device(device("contact01", "contact"), MAPPING)["type"] == "SWITCH"  # type: ignore[index]
    emulated = moost_device(device("emu0001", "humidity", product=""), MAPPING)
    assert emulated["product_name"] == "DT humidity" and emulated["name"] == "emu0001"  # type: ignore[index]
    assert "goes to MOOST" in str(moost_device(device("motion01", "motion"), MAPPING))
    assert "pattern" in str(moost_device(device("a/b", "temperature"), MAPPING))


def test_building_details_from_labels_table_or_reported():
    body = building_body("site-42", [device("dev1", **ZURICH)], MAPPING, customer_id=CUSTOMER)
    assert body == {
        "customerBuildingId": "site-42", "customerId": CUSTOMER, "zip": "8001", "city": "Zurich", "countryCode": "CH",
    }  # fmt: skip
    tabled = replace(MAPPING, building_details={"site-9": {"zip": "10115", "city": "Berlin", "country_code": "DE",
                                                           "time_zone": "Europe/Berlin"}})  # fmt: skip
    assert building_body("site-9", [device("dev2")], tabled, customer_id=CUSTOMER)["timeZoneId"] == "Europe/Berlin"  # type: ignore[index]
    missing = building_body("site-7", [device("dev3", moost_zip="8001")], MAPPING, customer_id=CUSTOMER)
    assert isinstance(missing, str) and "city, country_code unknown" in missing and "moost_city" in missing
    clash = [device("dev4", **ZURICH), device("dev5", **{**ZURICH, "moost_city": "Bern"})]
    assert "disagree on city" in str(building_body("site-42", clash, MAPPING, customer_id=CUSTOMER))
    assert "pattern" in str(building_body("site-42", [device("dev6", **{**ZURICH, "moost_zip": "8"})], MAPPING,
                                          customer_id=CUSTOMER))  # fmt: skip


def test_merge_keeps_other_devices_and_their_extra_fields():
    theirs = {"id": "meter-1", "name": "Meter", "product_name": "M", "vendor_name": "Acme", "type": "SMART_METER"}
    old = {"id": "dev1", "name": "Old", "product_name": "102150", "vendor_name": "Disruptive Technologies",
           "type": "THERMAL_ZONE", "metadata": "kept"}  # fmt: skip
    ours = [dict(old, name="New"), {**old, "id": "dev2", "name": "Two"}]
    merged = merged_devices([theirs, old], ours)
    assert merged[0] == theirs and merged[1]["name"] == "New" and merged[1]["metadata"] == "kept"
    assert [d["id"] for d in merged] == ["meter-1", "dev1", "dev2"]
    assert [d["id"] for d in merged_devices(merged, [], remove=["dev1"])] == ["meter-1", "dev2"]


def test_plan_creates_registers_reports_and_moves():
    fleet = [
        device("dev1", name="One", moost_building="site-42", **ZURICH),
        device("dev2", name="Two", moost_building="site-42"),
        device("dev3", moost_building="site-7"),  # no details anywhere
        device("dev4", "motion", moost_building="site-42"),  # measures nothing MOOST takes
        device("dev5"),  # no building
        device("dev6", name="Six", moost_building="site-1"),  # moved away from site-old
    ]
    theirs = {"id": "meter-1", "name": "Meter", "product_name": "M", "vendor_name": "Acme", "type": "SMART_METER"}
    six = {"id": "dev6", "name": "Six", "product_name": "102150", "vendor_name": "Disruptive Technologies",
           "type": "THERMAL_ZONE"}  # fmt: skip
    buildings = [
        {"customerBuildingId": "site-1", "devices": [theirs]},
        {"customerBuildingId": "site-old", "devices": [six, theirs]},
    ]
    plan = plan_buildings(fleet, MAPPING, buildings=buildings, customer_id=CUSTOMER)
    steps = {step.building: step for step in plan.steps}
    assert steps["site-42"].action == "create" and [d["id"] for d in steps["site-42"].devices] == ["dev1", "dev2"]
    assert steps["site-7"].action == "blocked" and "unknown" in steps["site-7"].reason
    assert steps["site-1"].action == "update" and steps["site-1"].added == ["dev6"]
    assert steps["site-old"].action == "update" and steps["site-old"].removed == ["dev6"]
    unregistered = dict(plan.unregistered)
    assert set(unregistered) == {"dev3", "dev4", "dev5"} and "no default building" in unregistered["dev5"]
    assert plan.changes and [s.building for s in plan.blocked] == ["site-7"]


def test_plan_of_a_registered_fleet_changes_nothing():
    fleet = [device("dev1", name="One", moost_building="site-1")]
    entry = moost_device(fleet[0], MAPPING)
    buildings = [{"customerBuildingId": "site-1", "devices": [entry]}]
    plan = plan_buildings(fleet, MAPPING, buildings=buildings, customer_id=CUSTOMER)
    assert not plan.changes and plan.steps[0].action == "unchanged"
    renamed = [device("dev1", name="Uno", moost_building="site-1")]
    plan = plan_buildings(renamed, MAPPING, buildings=buildings, customer_id=CUSTOMER)
    assert plan.steps[0].action == "update" and plan.steps[0].updated == ["dev1"]
