"""The mapping file: the shipped default gives every DT type a fate; a user's file is checked key by key."""

from __future__ import annotations

import pytest

from connector.core.events import DT_EVENT_TYPES
from tests.support.samples import CUSTOMER, push_of
from workers.moost.events import to_moost
from workers.translate.mapping import MappingError, load_mapping, parse_mapping
from workers.translate.pushes import Skipped

MAPPING = load_mapping()

class TestMapping:
    def test_default_mapping_gives_every_dt_type_an_explicit_fate_for_both_destinations(self):
        assert set(MAPPING.moost) == set(DT_EVENT_TYPES) == set(MAPPING.spot)
        assert MAPPING.building_label == "moost_building"

    @pytest.mark.parametrize(
        ("toml", "key"),
        [
            ("version = 2", "version"),
            ('version = 1\n[moost]\nbuilding_label = ""', "moost.building_label"),
            ('version = 1\n[moost]\nbuilding_label = "b"\n[events.quantum.moost]\nskip = "x"', "events.quantum"),
            ('version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.pigeon]\nskip = "x"', "events.co2.pigeon"),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.moost]\ntype = "CO2"\nvalue = "ppm"',
                "events.co2.moost.type",
            ),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.moost]\ntype = "TEMPERATURE"\nvalue = "c"',
                "events.co2.moost.value",
            ),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.contact.moost]\n'
                'type = "SWITCH_STATE"\nvalue = "state"',
                "events.contact.moost.map",
            ),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.moost]\ntype = "TEMPERATURE"\nvalue = "ppm"\n'
                'source = "TOASTER"',
                "events.co2.moost.source",
            ),
            ('version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.moost]\nskip = ""', "events.co2.moost.skip"),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.spot]\nevent_type_id = "7"',
                "events.co2.spot.event_type_id",
            ),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.spot]\n'
                "event_type_id = 7\nduration_ms = 600001",
                "events.co2.spot.duration_ms",
            ),
            (
                'version = 1\n[moost]\nbuilding_label = "b"\n[events.co2.spot]\nevent_type_id = 7\ncolour = 1',
                "events.co2.spot.colour",
            ),
            ("version = [", "not valid TOML"),
        ],
    )
    def test_errors_name_the_key(self, toml, key):
        with pytest.raises(MappingError, match=key.replace(".", r"\.")):
            parse_mapping(toml)

    def test_types_missing_from_a_user_mapping_are_skipped_with_a_reason(self):
        small = parse_mapping('version = 1\n[moost]\nbuilding_label = "site"')
        with pytest.raises(Skipped) as info:
            to_moost(push_of("temperature"), small, customer_id=CUSTOMER)
        assert "not in the mapping" in info.value.detail

    def test_unreadable_file_names_the_variable(self, tmp_path):
        from connector.core.errors import ConfigError
        from workers.translate.mapping import checked_mapping

        with pytest.raises(MappingError, match=r"cannot read .*missing\.toml"):
            load_mapping(tmp_path / "missing.toml")
        # What check-config, web and worker print: the variable, once.
        with pytest.raises(ConfigError, match=r"^CONNECTOR_MAPPING: cannot read .*missing\.toml"):
            checked_mapping(tmp_path / "missing.toml")
