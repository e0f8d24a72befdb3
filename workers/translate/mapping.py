"""The mapping file: what each DT event type becomes at MOOST and at Spot AI.

The shipped default is ``workers/translate/mapping.toml``; ``CONNECTOR_MAPPING`` may name another
file. ``parse_mapping`` is pure (text in, ``EventMapping`` out) and validates everything at
start-up: each error names the offending key (``events.contact.moost.map``), so a
typo fails the deploy instead of every event. Adding a sensor or a building needs a
label in DT Studio, not a code change; a new DT event type needs a line here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connector.core.errors import ConfigError
from workers.translate.readings import EXTRACTORS, VALUE_NAMES

DEFAULT_MAPPING_PATH = Path(__file__).with_name("mapping.toml")
SUPPORTED_VERSIONS = (1,)

MOOST_TYPES = frozenset(
    [
        "CHARGING_MODE",
        "DEVICE_STATUS",
        "ENERGY_CONSUMPTION",
        "ENERGY_CONSUMPTION_LAST_24H",
        "ENERGY_CONSUMPTION_YESTERDAY",
        "ENERGY_EXCESS_LAST_24H",
        "ENERGY_EXCESS_YESTERDAY",
        "ENERGY_GENERATION_LAST_24H",
        "ENERGY_GENERATION_YESTERDAY",
        "ENERGY_IMPORT",
        "ENERGY_IMPORT_YESTERDAY",
        "ENERGY_EXPORT",
        "ENERGY_EXPORT_YESTERDAY",
        "EXPECTED_OUTSIDE_TEMPERATURE",
        "EXPECTED_OUTSIDE_TEMPERATURE_4DAYS",
        "GRID_POWER_CONSUMPTION",
        "GRID_POWER_CONSUMPTION_ANOMALY_SCORE",
        "IS_LOW_TARIFF_HOURS",
        "POWER_CONSUMPTION",
        "POWER_CONSUMPTION_FORECAST_1H",
        "POWER_CONSUMPTION_FORECAST_24H",
        "POWER_EXCESS",
        "POWER_GENERATION",
        "POWER_GENERATION_FORECAST_1H",
        "POWER_GENERATION_FORECAST_1H_MIN",
        "POWER_GENERATION_FORECAST_24H",
        "POWER_GENERATION_FORECAST_48H",
        "POWER_GENERATION_FORECAST_DAY_AFTER_TOMORROW",
        "POWER_GENERATION_FORECAST_TOMORROW",
        "SELF_CONSUMPTION_RATE",
        "SELF_CONSUMPTION_RATE_YESTERDAY",
        "SELF_SUFFICIENCY_RATE",
        "SELF_SUFFICIENCY_RATE_YESTERDAY",
        "STATE_OF_CHARGE_FORECAST_RATE",
        "STATE_OF_CHARGE_RATE",
        "SWITCH_STATE",
        "TEMPERATURE",
        "WATER_TEMPERATURE",
        "POWER_CONSUMPTION_BASE_LOAD",
        "DYNAMIC_TARIFF_PRICE",
        "DYNAMIC_TARIFF_PRICE_FORECAST_1H",
        "DYNAMIC_TARIFF_LOWEST_PRICE_FORECAST_TOMORROW",
        "IS_HIGH_TARIFF_HOURS",
        "ENERGY_EXCESS",
        "ENERGY_BASE_CONSUMPTION",
        "ENERGY_CONSUMPTION_FORECAST_1H",
        "ENERGY_CONSUMPTION_FORECAST_24H",
        "ENERGY_GENERATION",
        "ENERGY_GENERATION_FORECAST_1H",
        "ENERGY_GENERATION_FORECAST_24H",
        "GRID_ENERGY_CONSUMPTION",
        "GRID_ENERGY_CONSUMPTION_YESTERDAY",
        "GRID_ENERGY_CONSUMPTION_ANOMALY_SCORE",
        "GRID_ENERGY_BASE_CONSUMPTION",
        "ENERGY_GENERATION_FORECAST_DAY_AFTER_TOMORROW",
        "ENERGY_GENERATION_FORECAST_TOMORROW",
        "GLOBAL_HORIZONTAL_IRRADIATION_FORECAST_TOMORROW_HOURLY",
        "GLOBAL_HORIZONTAL_IRRADIATION_FORECAST_TOMORROW",
        "ENERGY_CONSUMPTION_FORECAST_TOMORROW",
        "ENERGY_CONSUMPTION_FORECAST_DAY_AFTER_TOMORROW",
        "GRID_BASE_LOAD_CONSUMPTION",
        "DYNAMIC_TARIFF_PRICE_FORECAST_24H",
        "GRID_POWER_CONSUMPTION_YESTERDAY",
    ]
)
"""MOOST ``Event.type`` enum (MOOST public OpenAPI spec, 63 values)."""

MOOST_SOURCES = frozenset(
    [
        "APPLIANCE",
        "BATTERY",
        "CAR",
        "CAR_CHARGER",
        "ENERGY_MEASUREMENT",
        "GATEWAY",
        "HEAT_PUMP",
        "INPUT_DEVICE",
        "INVERTER",
        "MOOST",
        "SMART_METER",
        "SMART_PLUG",
        "SWITCH",
        "THERMOSTAT",
        "THERMAL_ZONE",
        "THERMAL_STORAGE",
        "WATER_HEATER",
        "WALL_TABLET",
        "SOLAR_PANEL",
        "DISHWASHER",
        "DRYER",
        "ENTERTAINMENT",
        "LIGHTING",
        "OVEN",
        "REFRIGERATION",
        "WASHING_MACHINE",
    ]
)
"""MOOST ``Event.source`` (device type) enum (MOOST public OpenAPI spec, 26 values)."""

SPOT_MAX_DURATION_MS = 600_000
SPOT_MAX_BUFFER_MS = 120_000


class MappingError(Exception):
    """The mapping file is invalid. The message starts with the offending key."""


@dataclass(frozen=True)
class MoostRule:
    """How one DT event type becomes MOOST events (or why it does not)."""

    skip: str | None = None
    type: str = ""
    source: str | None = None
    value: str = ""
    value_map: dict[str, float] = field(default_factory=dict)
    sync: bool = False
    """``labelsChanged`` only: keep the device's MOOST registration (name, building) in step."""


@dataclass(frozen=True)
class SpotRule:
    """How one DT event type becomes a Spot integration event (or why it does not)."""

    skip: str | None = None
    event_type_id: int = 0
    duration_ms: int | None = None
    buffer_ms: int | None = None
    sync: bool = False
    """``labelsChanged`` only: keep the device's name in Spot in step."""


BUILDING_FIELDS = ("zip", "city", "country_code", "time_zone")
"""What ``setup moost`` needs to create a MOOST building (time zone optional), each from the mapping's
``[moost.buildings.<id>]`` table or the device label ``[moost] <field>_label`` names."""


@dataclass(frozen=True)
class EventMapping:
    """A validated mapping file."""

    version: int
    building_label: str
    default_building: str
    spot_device_prefix: str
    moost: dict[str, MoostRule]
    spot: dict[str, SpotRule]
    building_details: dict[str, dict[str, str]] = field(default_factory=dict)
    """``[moost.buildings.<customerBuildingId>]``: zip, city, country_code, time_zone."""
    building_detail_labels: dict[str, str] = field(default_factory=dict)
    """Building field → the DT label carrying it (``[moost] zip_label`` …)."""
    spot_device_label: str = ""
    """DT label holding a device's Spot ``integration_device_id`` ("" = none): labelled devices
    are addressed by that id, and their backfilled and replayed events go to Spot's bulk import."""

    def moost_rule(self, event_type: str) -> MoostRule:
        return self.moost.get(event_type) or MoostRule(skip=f"{event_type} is not in the mapping")

    def spot_rule(self, event_type: str) -> SpotRule:
        return self.spot.get(event_type) or SpotRule(skip=f"{event_type} is not in the mapping")

    def forwarded_types(self, destinations: Iterable[str] = ("moost", "spot")) -> set[str]:
        """The DT event types the mapping does not skip at any of ``destinations`` (syncs included)."""
        rules: list[dict[str, MoostRule] | dict[str, SpotRule]] = []
        if "moost" in destinations:
            rules.append(self.moost)
        if "spot" in destinations:  # ids: the mapping's or setup's
            rules.append(self.spot)
        return {event_type for table in rules for event_type, rule in table.items() if rule.skip is None}

    def with_spot_ids(self, recorded: dict[str, int]) -> EventMapping:
        """This mapping with ``recorded`` Spot event type ids (``setup spot``'s) where it gives none:
        a non-zero ``event_type_id`` in the file overrides what setup recorded. Pure."""
        spot = {
            event_type: replace(rule, event_type_id=recorded[event_type])
            if rule.skip is None and rule.event_type_id == 0 and recorded.get(event_type)
            else rule
            for event_type, rule in self.spot.items()
        }
        return replace(self, spot=spot)


def load_mapping(path: Path | str | None = None) -> EventMapping:
    """Read and validate the mapping at ``path`` (default, also for "": the shipped file).

    Raises:
        MappingError: the file is unreadable or invalid.
    """
    path = Path(path) if path else DEFAULT_MAPPING_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read {path}: {exc.strerror}") from None
    return parse_mapping(text, source=str(path))


def checked_mapping(path: Path | str | None = None) -> EventMapping:
    """``load_mapping``, failing as a configuration error (what check-config, web and worker print).

    Raises:
        ConfigError: ``CONNECTOR_MAPPING: <what is wrong, naming the key>``.
    """
    try:
        return load_mapping(path)
    except MappingError as exc:
        raise ConfigError(f"CONNECTOR_MAPPING: {exc}") from None


def parse_mapping(text: str, *, source: str = "mapping") -> EventMapping:
    """Parse and validate mapping TOML. Pure.

    Raises:
        MappingError: naming the offending key.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{source}: not valid TOML: {exc}") from None
    version = doc.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise MappingError(f"version: must be one of {SUPPORTED_VERSIONS} (got {version!r})")
    moost_section = _table(doc, "moost", "moost")
    spot_section = _table(doc, "spot", "spot")
    events = _table(doc, "events", "events")
    moost: dict[str, MoostRule] = {}
    spot: dict[str, SpotRule] = {}
    for event_type, destinations in events.items():
        key = f"events.{event_type}"
        if event_type not in EXTRACTORS:
            raise MappingError(f"{key}: unknown DT event type (known: {', '.join(sorted(EXTRACTORS))})")
        if not isinstance(destinations, dict):
            raise MappingError(f"{key}: must be a table")
        unknown = set(destinations) - {"moost", "spot"}
        if unknown:
            raise MappingError(f"{key}.{sorted(unknown)[0]}: unknown destination (known: moost, spot)")
        if "moost" in destinations:
            moost[event_type] = _moost_rule(destinations["moost"], f"{key}.moost", event_type)
        if "spot" in destinations:
            spot[event_type] = _spot_rule(destinations["spot"], f"{key}.spot", event_type)
    return EventMapping(
        version=version,
        building_details=_building_details(moost_section),
        building_detail_labels={
            name: _string(moost_section, f"{name}_label", f"moost.{name}_label", required=False)
            or f"moost_{name}"
            for name in BUILDING_FIELDS
        },
        building_label=_string(moost_section, "building_label", "moost.building_label", required=True),
        default_building=_string(moost_section, "default_building", "moost.default_building", required=False),
        spot_device_prefix=_string(spot_section, "device_id_prefix", "spot.device_id_prefix", required=False),
        spot_device_label=_string(spot_section, "device_label", "spot.device_label", required=False),
        moost=moost,
        spot=spot,
    )


def _table(doc: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise MappingError(f"{key}: must be a table")
    return value


def _string(table: dict[str, Any], name: str, key: str, *, required: bool) -> str:
    value = table.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise MappingError(f"{key}: must be a {'non-empty ' if required else ''}string")
    return value


def _skip(rule: dict[str, Any], key: str) -> str | None:
    if "skip" not in rule:
        return None
    reason = rule["skip"]
    if not isinstance(reason, str) or not reason.strip():
        raise MappingError(f"{key}.skip: must be a non-empty reason")
    if len(rule) > 1:
        raise MappingError(f"{key}: a skipped type takes no other keys")
    return reason


def _building_details(section: dict[str, Any]) -> dict[str, dict[str, str]]:
    buildings = section.get("buildings", {})
    if not isinstance(buildings, dict):
        raise MappingError("moost.buildings: must be a table of buildings")
    details = {}
    for building, fields in buildings.items():
        key = f"moost.buildings.{building}"
        if not isinstance(fields, dict):
            raise MappingError(f"{key}: must be a table")
        unknown = set(fields) - set(BUILDING_FIELDS)
        if unknown:
            raise MappingError(f"{key}.{sorted(unknown)[0]}: unknown key (known: {', '.join(BUILDING_FIELDS)})")
        details[str(building)] = {name: _string(fields, name, f"{key}.{name}", required=False) for name in fields}
    return details


def _sync(rule: dict[str, Any], key: str, event_type: str) -> bool:
    if "sync" not in rule:
        return False
    if event_type != "labelsChanged":
        raise MappingError(f"{key}.sync: only labelsChanged events can sync devices")
    if rule["sync"] is not True or len(rule) > 1:
        raise MappingError(f"{key}.sync: must be true, alone in its table")
    return True


def _moost_rule(rule: object, key: str, event_type: str) -> MoostRule:
    if not isinstance(rule, dict):
        raise MappingError(f"{key}: must be a table")
    reason = _skip(rule, key)
    if reason is not None:
        return MoostRule(skip=reason)
    if _sync(rule, key, event_type):
        return MoostRule(sync=True)
    unknown = set(rule) - {"type", "source", "value", "map"}
    if unknown:
        raise MappingError(f"{key}.{sorted(unknown)[0]}: unknown key")
    moost_type = rule.get("type")
    if moost_type not in MOOST_TYPES:
        raise MappingError(f"{key}.type: {moost_type!r} is not a MOOST event type")
    source = rule.get("source")
    if source is not None and source not in MOOST_SOURCES:
        raise MappingError(f"{key}.source: {source!r} is not a MOOST device type")
    value = rule.get("value")
    if value not in VALUE_NAMES[event_type]:
        known = ", ".join(sorted(VALUE_NAMES[event_type])) or "none"
        raise MappingError(f"{key}.value: {event_type} readings have no {value!r} (they have: {known})")
    value_map = rule.get("map", {})
    if not isinstance(value_map, dict) or not all(type(number) in (int, float) for number in value_map.values()):
        raise MappingError(f"{key}.map: must map reading values to numbers")
    if value in ("state", "connection", "transmission_mode", "remarks") and not value_map:
        raise MappingError(f"{key}.map: {value!r} is text; MOOST needs a number, so give a map")
    return MoostRule(type=moost_type, source=source, value=value, value_map=dict(value_map))


def _spot_rule(rule: object, key: str, event_type: str) -> SpotRule:
    if not isinstance(rule, dict):
        raise MappingError(f"{key}: must be a table")
    reason = _skip(rule, key)
    if reason is not None:
        return SpotRule(skip=reason)
    if _sync(rule, key, event_type):
        return SpotRule(sync=True)
    unknown = set(rule) - {"event_type_id", "duration_ms", "buffer_ms"}
    if unknown:
        raise MappingError(f"{key}.{sorted(unknown)[0]}: unknown key")
    type_id = rule.get("event_type_id")
    if type(type_id) is not int or not 0 <= type_id <= 2**31 - 1:
        raise MappingError(f"{key}.event_type_id: must be a Spot integration event type id (0 = not set up)")
    duration = _optional_ms(rule, "duration_ms", f"{key}.duration_ms", SPOT_MAX_DURATION_MS)
    buffer = _optional_ms(rule, "buffer_ms", f"{key}.buffer_ms", SPOT_MAX_BUFFER_MS)
    return SpotRule(event_type_id=type_id, duration_ms=duration, buffer_ms=buffer)


def _optional_ms(rule: dict[str, Any], name: str, key: str, maximum: int) -> int | None:
    if name not in rule:
        return None
    value = rule[name]
    if type(value) is not int or not 0 <= value <= maximum:
        raise MappingError(f"{key}: must be an integer from 0 to {maximum}")
    return value
