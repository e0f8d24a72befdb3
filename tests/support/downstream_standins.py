"""Stateful stand-ins for the two downstream APIs, MOOST and Spot AI, on 127.0.0.1 (real HTTP/1.1, keep-alive).

They follow the documented contracts (../shared/reference/downstream-apis.md).

``MoostStandIn`` (§1.2, §1.3, §1.6, §1.7):

* ``GET /auth/token/v1?clientId=&clientSecret=`` issues a random bearer token (``expires_in`` 86400), or 401
  ``{"code": "401", "message": "invalid client"}`` (tokens are JWTs with a ``customerId`` claim); every other call
  needs ``Authorization: Bearer <token>``;
* ``POST``/``PUT``/``GET /buildings/v1``, ``GET``/``DELETE /buildings/{id}/v1`` and ``PUT /buildings/{id}/devices/v1``
  (replaces the building's whole device set) with M-OAS's field patterns: 201 on create, 409 on a duplicate, 404 on an
  unknown building, 400 with a field → message object (``devices[0].type``) on invalid data;
* ``POST /events/v1`` (one event → 201) and ``POST /events/historical/v1`` (an array → 200, and nothing is stored unless
  every event is valid); an event needs a known building and the token's ``customerId``, else 400.

``SpotStandIn`` (§2.3 to §2.7); every call needs ``Authorization: Bearer <api key>``, else 401; ids count up from 101:

* integrations (create, list, get); event types (create, cursor-paged list, get, replace, delete, which also deletes
  that type's events); devices (create, cursor-paged list, get, update);
* ``POST /v1/integrations/{id}/events``: the attributes are validated against the event type's JSON Schema (Draft
  2020-12); the device is resolved by ``integration_device_id`` (must exist) > ``device_external_id`` (found or
  auto-created) > the type's ``external_device_id_template`` (found or auto-created) > 400; 202 with an empty body;
* ``POST /v1/integrations/{id}/events/import``: every item valid, with an existing device → 202, else 422 and nothing
  is stored.

  Failures are Spot's ``ValidationError`` (422): ``{"name", "message", "details": [{"field", "message", "value"}]}``.

Test hooks on ``state`` (both): ``fail_next`` (each request, before anything else, answers the next status with ``{}``),
``requests_seen`` ((method, path) of every request) and ``rejected`` (every 400/422 body the API logic sent; injected
``fail_next`` answers are not in it). MOOST's ``tokens`` can be cleared to make every issued token invalid.

Choices where the contract is silent: MOOST treats ``null`` in an optional field as absent and keeps a building's
devices when a ``PUT /buildings/v1`` omits them; Spot validates request bodies strictly (``null`` is not an integer).
Not modelled: rate limits (429, ``Retry-After``), token expiry, JWT contents, 403/scopes, MOOST's ``activeOnly`` filter,
``core-data``, rules, notifications and the timestamp unit (seconds vs ms is not checked), Spot's integration
PUT/DELETE, device DELETE and camera links, event list/update/delete, and JSON Schema ``format`` assertions.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

import jwt
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

Reply = tuple[int, Any]
"""A status and a JSON-able body (``None``: no body)."""

# fmt: off
MOOST_DEVICE_TYPES = frozenset(
    {
        "APPLIANCE", "BATTERY", "CAR", "CAR_CHARGER", "ENERGY_MEASUREMENT", "GATEWAY", "HEAT_PUMP", "INPUT_DEVICE",
        "INVERTER", "MOOST", "SMART_METER", "SMART_PLUG", "SWITCH", "THERMOSTAT", "THERMAL_ZONE", "THERMAL_STORAGE",
        "WATER_HEATER", "WALL_TABLET", "SOLAR_PANEL", "DISHWASHER", "DRYER", "ENTERTAINMENT", "LIGHTING", "OVEN",
        "REFRIGERATION", "WASHING_MACHINE",
    }
)
MOOST_EVENT_TYPES = frozenset(
    {
        "CHARGING_MODE", "DEVICE_STATUS", "ENERGY_CONSUMPTION", "ENERGY_CONSUMPTION_LAST_24H",
        "ENERGY_CONSUMPTION_YESTERDAY", "ENERGY_EXCESS_LAST_24H", "ENERGY_EXCESS_YESTERDAY",
        "ENERGY_GENERATION_LAST_24H", "ENERGY_GENERATION_YESTERDAY", "ENERGY_IMPORT", "ENERGY_IMPORT_YESTERDAY",
        "ENERGY_EXPORT", "ENERGY_EXPORT_YESTERDAY", "EXPECTED_OUTSIDE_TEMPERATURE",
        "EXPECTED_OUTSIDE_TEMPERATURE_4DAYS", "GRID_POWER_CONSUMPTION", "GRID_POWER_CONSUMPTION_ANOMALY_SCORE",
        "IS_LOW_TARIFF_HOURS", "POWER_CONSUMPTION", "POWER_CONSUMPTION_FORECAST_1H", "POWER_CONSUMPTION_FORECAST_24H",
        "POWER_EXCESS", "POWER_GENERATION", "POWER_GENERATION_FORECAST_1H", "POWER_GENERATION_FORECAST_1H_MIN",
        "POWER_GENERATION_FORECAST_24H", "POWER_GENERATION_FORECAST_48H",
        "POWER_GENERATION_FORECAST_DAY_AFTER_TOMORROW", "POWER_GENERATION_FORECAST_TOMORROW", "SELF_CONSUMPTION_RATE",
        "SELF_CONSUMPTION_RATE_YESTERDAY", "SELF_SUFFICIENCY_RATE", "SELF_SUFFICIENCY_RATE_YESTERDAY",
        "STATE_OF_CHARGE_FORECAST_RATE", "STATE_OF_CHARGE_RATE", "SWITCH_STATE", "TEMPERATURE", "WATER_TEMPERATURE",
        "POWER_CONSUMPTION_BASE_LOAD", "DYNAMIC_TARIFF_PRICE", "DYNAMIC_TARIFF_PRICE_FORECAST_1H",
        "DYNAMIC_TARIFF_LOWEST_PRICE_FORECAST_TOMORROW", "IS_HIGH_TARIFF_HOURS", "ENERGY_EXCESS",
        "ENERGY_BASE_CONSUMPTION", "ENERGY_CONSUMPTION_FORECAST_1H", "ENERGY_CONSUMPTION_FORECAST_24H",
        "ENERGY_GENERATION", "ENERGY_GENERATION_FORECAST_1H", "ENERGY_GENERATION_FORECAST_24H",
        "GRID_ENERGY_CONSUMPTION", "GRID_ENERGY_CONSUMPTION_YESTERDAY", "GRID_ENERGY_CONSUMPTION_ANOMALY_SCORE",
        "GRID_ENERGY_BASE_CONSUMPTION", "ENERGY_GENERATION_FORECAST_DAY_AFTER_TOMORROW",
        "ENERGY_GENERATION_FORECAST_TOMORROW", "GLOBAL_HORIZONTAL_IRRADIATION_FORECAST_TOMORROW_HOURLY",
        "GLOBAL_HORIZONTAL_IRRADIATION_FORECAST_TOMORROW", "ENERGY_CONSUMPTION_FORECAST_TOMORROW",
        "ENERGY_CONSUMPTION_FORECAST_DAY_AFTER_TOMORROW", "GRID_BASE_LOAD_CONSUMPTION",
        "DYNAMIC_TARIFF_PRICE_FORECAST_24H", "GRID_POWER_CONSUMPTION_YESTERDAY",
    }
)
# fmt: on
SPOT_MAX_DURATION_MS = 600_000
SPOT_MAX_BUFFER_MS = 120_000


class _Answer(Exception):
    """Raised by a handler to answer at once (e.g. 404 for an unknown parent resource)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


@dataclass
class _Call:
    method: str
    path: str
    params: tuple[str, ...]
    query: dict[str, str]
    headers: Message
    body: Any


@dataclass
class _Traffic:
    requests_seen: list[tuple[str, str]] = field(default_factory=list)
    """(method, path without the query) of every request, in arrival order."""
    fail_next: list[int] = field(default_factory=list)
    """Statuses: each request answers the next one (body ``{}``) until none are left."""
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Every 400/422 body the API logic sent (tests assert it stays empty)."""


S = TypeVar("S", bound=_Traffic)
Handler = Callable[[_Call], Reply]


class _JsonServer(Generic[S]):
    """HTTP plumbing shared by both stand-ins: parse, record, inject failures, route, reply with Content-Length."""

    _public_paths: frozenset[str] = frozenset()

    def __init__(self, state: S, routes: list[tuple[str, str, Handler]]) -> None:
        self.state = state
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in routes]
        self._lock = threading.Lock()
        owner = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # replies go out at once (no 40 ms delayed-ACK stalls on keep-alive)

            def _serve(self) -> None:
                owner._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ---- per-API hooks -------------------------------------------------------------

    def _authorized(self, headers: Message) -> bool:
        raise NotImplementedError

    def _unauthorized(self) -> Any:
        raise NotImplementedError

    def _bad_json(self) -> Reply:
        raise NotImplementedError

    # ---- plumbing ------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(request.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        body: Any
        with self._lock:
            self.state.requests_seen.append((request.command, split.path))
            if self.state.fail_next:
                status, body = self.state.fail_next.pop(0), {}
            else:
                status, body = self._respond(request.command, split.path, query, request.headers, raw)
                if status in (400, 422):
                    self.state.rejected.append(body)
            data = b"" if body is None else json.dumps(body).encode()
        try:
            request.send_response(status)
            if body is not None:
                request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def _respond(self, method: str, path: str, query: dict[str, str], headers: Message, raw: bytes) -> Reply:
        if path not in self._public_paths and not self._authorized(headers):
            return 401, self._unauthorized()
        allowed = False
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            allowed = True
            if route_method != method:
                continue
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._bad_json()
            params = tuple(urllib.parse.unquote(group) for group in match.groups())
            try:
                return handler(_Call(method, path, params, query, headers, body))
            except _Answer as answer:
                return answer.status, answer.body
            except Exception as exc:  # a stand-in bug: answer it rather than drop the connection
                return 500, {"message": f"stand-in error: {exc!r}"}
        return (405, {"message": "method not allowed"}) if allowed else (404, {"message": "no such route"})


def _bearer(headers: Message) -> str:
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    return token if scheme == "Bearer" else ""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# ==== MOOST ===========================================================================================================

Check = Callable[[Any], bool]


def _pattern(regex: str) -> Check:
    compiled = re.compile(regex)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


def _length(low: int, high: int) -> Check:
    return lambda value: isinstance(value, str) and low <= len(value) <= high


def _member(values: frozenset[str]) -> Check:
    return lambda value: isinstance(value, str) and value in values


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_ID_100 = (_pattern(r"[a-zA-Z0-9:._-]{1,100}"), "must match ^[a-zA-Z0-9:._-]{1,100}$")
_ID_64 = (_pattern(r"[a-zA-Z0-9:._-]{3,64}"), "must match ^[a-zA-Z0-9:._-]{3,64}$")
_TEXT_100 = (_length(1, 100), "must be a string of 1 to 100 characters")

# field: (required, check, message when the check fails)
_BUILDING_RULES: dict[str, tuple[bool, Check, str]] = {
    "customerBuildingId": (True, *_ID_100),
    "customerId": (True, _pattern(r"[a-zA-Z0-9]{24}"), "must match ^[a-zA-Z0-9]{24}$"),
    "zip": (True, _pattern(r"[A-Z0-9 -]{3,10}"), "must match ^[A-Z0-9 -]{3,10}$"),
    "city": (True, *_TEXT_100),
    "countryCode": (True, _pattern(r"[A-Z]{2}"), "must match ^[A-Z]{2}$"),
    "timeZoneId": (False, _pattern(r"[a-zA-Z0-9/_+-]{1,32}"), "must match ^[a-zA-Z0-9/_+-]{1,32}$"),
    "devices": (False, lambda value: isinstance(value, list), "must be an array of devices"),
}
_DEVICE_RULES: dict[str, tuple[bool, Check, str]] = {
    "id": (True, *_ID_64),
    "name": (True, *_TEXT_100),
    "product_name": (True, *_TEXT_100),
    "vendor_name": (True, *_TEXT_100),
    "type": (True, _member(MOOST_DEVICE_TYPES), "must be one of MOOST's device types"),
    "metadata": (False, _length(0, 1000), "must be a string of at most 1000 characters"),
}
_EVENT_RULES: dict[str, tuple[bool, Check, str]] = {
    "customerId": _BUILDING_RULES["customerId"],
    "customerBuildingId": (True, *_ID_100),
    "deviceId": (True, *_ID_64),
    "deviceName": (True, *_TEXT_100),
    "value": (True, _number, "must be a number"),
    "type": (True, _member(MOOST_EVENT_TYPES), "must be one of MOOST's event types"),
    "source": (False, _member(MOOST_DEVICE_TYPES), "must be one of MOOST's device types"),
    "timestamp": (False, _integer, "must be an integer"),
    "forecastTimestamp": (False, _integer, "must be an integer"),
    "ingestionTimestamp": (False, _integer, "must be an integer"),
}


def _problems(obj: Any, rules: Mapping[str, tuple[bool, Check, str]], prefix: str = "") -> dict[str, str]:
    """Field → message for each rule ``obj`` breaks (``null`` in an optional field counts as absent)."""
    if not isinstance(obj, dict):
        return {prefix.rstrip(".") or "body": "must be a JSON object"}
    problems: dict[str, str] = {}
    for name, (required, check, message) in rules.items():
        value = obj.get(name)
        if value is None:
            if required:
                problems[prefix + name] = "is required"
        elif not check(value):
            problems[prefix + name] = message
    return problems


def _device_set_problems(devices: Any, prefix: str) -> dict[str, str]:
    if not isinstance(devices, list):
        return {prefix.rstrip(".") or "body": "must be an array of devices"}
    problems: dict[str, str] = {}
    for index, device in enumerate(devices):
        problems.update(_problems(device, _DEVICE_RULES, f"{prefix}[{index}]."))
    return problems


@dataclass
class MoostState(_Traffic):
    buildings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """customerBuildingId → the stored building (with ``id`` and ``devices``)."""
    device_set_puts: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    """(customerBuildingId, body) of every authorised device-set PUT with an array body, accepted or not."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Accepted ``POST /events/v1`` bodies, as sent."""
    historical: list[dict[str, Any]] = field(default_factory=list)
    """Events of accepted ``POST /events/historical/v1`` batches, as sent."""
    tokens: set[str] = field(default_factory=set, repr=False)
    """Issued, still valid tokens (clear it to make the client fetch a new one)."""
    tokens_issued: int = 0


class MoostStandIn(_JsonServer[MoostState]):
    """MOOST's token, building and event APIs. Start with ``MoostStandIn()``; stop with ``close()``."""

    _public_paths = frozenset({"/auth/token/v1"})

    def __init__(
        self,
        client_id: str = "client1",
        client_secret: str = "moost-secret-do-not-log-0123456789",  # noqa: S107 (a test credential)
        customer_id: str = "656730be2bc9719e6e5ed51d",
    ) -> None:
        self.client_id, self._client_secret, self.customer_id = client_id, client_secret, customer_id
        building = r"/buildings/([^/]+)"
        super().__init__(
            MoostState(),
            [
                ("GET", r"/auth/token/v1", self._token),
                ("POST", r"/buildings/v1", self._create_building),
                ("PUT", r"/buildings/v1", self._update_building),
                ("GET", r"/buildings/v1", self._list_buildings),
                ("GET", rf"{building}/v1", self._get_building),
                ("DELETE", rf"{building}/v1", self._delete_building),
                ("PUT", rf"{building}/devices/v1", self._put_devices),
                ("POST", r"/events/v1", self._add_event),
                ("POST", r"/events/historical/v1", self._add_historical),
            ],
        )

    def _authorized(self, headers: Message) -> bool:
        return _bearer(headers) in self.state.tokens

    def _unauthorized(self) -> Any:
        return {"code": "401", "message": "invalid or missing token"}

    def _bad_json(self) -> Reply:
        return 400, {"body": "is not valid JSON"}

    # ---- token ---------------------------------------------------------------------

    def _token(self, call: _Call) -> Reply:
        valid_id = _same(call.query.get("clientId", ""), self.client_id)
        valid_secret = _same(call.query.get("clientSecret", ""), self._client_secret)
        if not (valid_id and valid_secret):
            return 401, {"code": "401", "message": "invalid client"}
        # A JWT like MOOST's (§1.2: customerId claim, 24 h), signed with a key only the stand-in knows.
        claims = {"customerId": self.customer_id, "sub": f"{self.client_id}@clients", "jti": secrets.token_hex(8)}
        token = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
        self.state.tokens.add(token)
        self.state.tokens_issued += 1
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 86400}

    # ---- buildings -----------------------------------------------------------------

    def _building_problems(self, body: Any) -> dict[str, str]:
        problems = _problems(body, _BUILDING_RULES)
        if not problems and body["customerId"] != self.customer_id:
            problems["customerId"] = "does not match the token's customer"
        if not problems and body.get("devices") is not None:
            problems.update(_device_set_problems(body["devices"], "devices"))
        return problems

    def _known(self, building_id: str) -> dict[str, Any]:
        building = self.state.buildings.get(building_id)
        if building is None:
            raise _Answer(404, {"code": "404", "message": "building not found"})
        return building

    def _create_building(self, call: _Call) -> Reply:
        if problems := self._building_problems(call.body):
            return 400, problems
        if call.body["customerBuildingId"] in self.state.buildings:
            return 409, {"code": "409", "message": "building already exists"}
        building = {**call.body, "id": secrets.token_hex(12), "devices": call.body.get("devices") or []}
        self.state.buildings[building["customerBuildingId"]] = building
        return 201, building

    def _update_building(self, call: _Call) -> Reply:
        if problems := self._building_problems(call.body):
            return 400, problems
        old = self._known(call.body["customerBuildingId"])
        devices = call.body["devices"] if call.body.get("devices") is not None else old["devices"]
        building = {**call.body, "id": old["id"], "devices": devices}
        self.state.buildings[building["customerBuildingId"]] = building
        return 200, building

    def _list_buildings(self, call: _Call) -> Reply:
        return 200, list(self.state.buildings.values())

    def _get_building(self, call: _Call) -> Reply:
        return 200, self._known(call.params[0])

    def _delete_building(self, call: _Call) -> Reply:
        building = self._known(call.params[0])
        del self.state.buildings[call.params[0]]
        return 200, building

    def _put_devices(self, call: _Call) -> Reply:
        if isinstance(call.body, list):
            self.state.device_set_puts.append((call.params[0], call.body))
        building = self._known(call.params[0])
        if problems := _device_set_problems(call.body, ""):
            return 400, problems
        building["devices"] = call.body
        return 200, building

    # ---- events --------------------------------------------------------------------

    def _event_problems(self, event: Any, prefix: str = "") -> dict[str, str]:
        problems = _problems(event, _EVENT_RULES, prefix)
        if problems:
            return problems
        if event["customerId"] != self.customer_id:
            return {f"{prefix}customerId": "does not match the token's customer"}
        if event["customerBuildingId"] not in self.state.buildings:
            return {f"{prefix}customerBuildingId": "unknown building"}
        return {}

    def _add_event(self, call: _Call) -> Reply:
        if problems := self._event_problems(call.body):
            return 400, problems
        self.state.events.append(call.body)
        return 201, {**call.body, "id": secrets.token_hex(12)}

    def _add_historical(self, call: _Call) -> Reply:
        if not isinstance(call.body, list):
            return 400, {"body": "must be a JSON array of events"}
        problems: dict[str, str] = {}
        for index, event in enumerate(call.body):
            problems.update(self._event_problems(event, f"[{index}]."))
        if problems:
            return 400, problems
        self.state.historical.extend(call.body)
        return 200, {}


# ==== Spot AI =========================================================================================================

_NAME = {"type": "string", "minLength": 1, "maxLength": 40}
_DURATION = {"type": "integer", "minimum": 0, "maximum": SPOT_MAX_DURATION_MS}
_BUFFER = {"type": "integer", "minimum": 0, "maximum": SPOT_MAX_BUFFER_MS}
_EXTERNAL_ID = {"type": "string", "minLength": 1, "maxLength": 255}
_TAGS = {"type": "array", "items": {"type": "string"}}
_EVENT_FIELDS = {
    "integration_event_type_id": {"type": "integer"},
    "timestamp": {"type": "string"},
    "attributes": {"type": "object"},
    "duration": _DURATION,
    "buffer": _BUFFER,
    "integration_device_id": {"type": "integer"},
}


def _body_schema(required: list[str], **properties: Any) -> Draft202012Validator:
    return Draft202012Validator({"type": "object", "required": required, "properties": properties})


_INTEGRATION_INPUT = _body_schema(["name"], name=_NAME, integration_type={"enum": ["custom", "pos"]})
_EVENT_TYPE_INPUT = _body_schema(
    ["name", "schema"],
    name=_NAME,
    schema={"type": "object"},
    duration=_DURATION,
    buffer=_BUFFER,
    external_device_id_template={"type": "string"},
)
_DEVICE_CREATE = _body_schema(
    ["name", "camera_ids"],
    name=_NAME,
    camera_ids={"type": "array", "items": {"type": "integer"}, "maxItems": 4},
    external_id=_EXTERNAL_ID,
    tags=_TAGS,
)
_DEVICE_UPDATE = _body_schema(["name"], name=_NAME, tags=_TAGS)
_INGEST = _body_schema(
    ["integration_event_type_id", "timestamp", "attributes"], **_EVENT_FIELDS, device_external_id=_EXTERNAL_ID
)
_IMPORT = _body_schema(
    ["integration_events"],
    integration_events={
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["integration_device_id", "integration_event_type_id", "timestamp", "attributes"],
            "properties": _EVENT_FIELDS,
        },
    },
)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Detail = dict[str, Any]


def _field(prefix: str, path: Iterable[str | int]) -> str:
    name = prefix
    for part in path:
        name = f"{name}[{part}]" if isinstance(part, int) else f"{name}.{part}" if name else str(part)
    return name


def _details(validator: Draft202012Validator, instance: Any, prefix: str = "") -> list[Detail]:
    """Spot-style ``details`` for every way ``instance`` breaks ``validator``'s schema."""
    details: list[Detail] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _field(prefix, error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            details += [{"field": _field(where, [name]), "message": "is required"} for name in missing]
        else:
            details.append({"field": where or "body", "message": error.message, "value": error.instance})
    return details


def _validation_error(details: list[Detail]) -> Reply:
    fields = ", ".join(detail["field"] for detail in details)
    return 422, {"name": "ValidationError", "message": f"Validation failed: {fields}", "details": details}


def _timestamp_details(value: str, where: str) -> list[Detail]:
    try:
        if _RFC3339.fullmatch(value) is not None:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            return []
    except ValueError:
        pass
    return [{"field": where, "message": "must be an RFC 3339 date-time", "value": value}]


def _template_details(template: str | None, schema: dict[str, Any]) -> list[Detail]:
    if template is None:
        return []
    placeholders = _PLACEHOLDER.findall(template)
    required = schema.get("required", [])
    if not template:
        message = "must not be empty"
    elif not placeholders or any(not name for name in placeholders):
        message = "must contain at least one {property} placeholder"
    elif missing := [name for name in placeholders if name.split(".")[0] not in required]:
        message = f"placeholders must name properties the schema requires: {', '.join(missing)}"
    else:
        return []
    return [{"field": "external_device_id_template", "message": message, "value": template}]


def _lookup(attributes: dict[str, Any], dotted: str) -> Any:
    value: Any = attributes
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _render(template: str, attributes: dict[str, Any]) -> str | None:
    """The template filled from ``attributes``, or ``None`` if a placeholder has no value."""
    values = {name: _lookup(attributes, name) for name in _PLACEHOLDER.findall(template)}
    if any(value is None for value in values.values()):
        return None
    text = {name: value if isinstance(value, str) else json.dumps(value) for name, value in values.items()}
    return _PLACEHOLDER.sub(lambda match: text[match.group(1)], template)


def _offset(cursor: str) -> int | None:
    """The position an opaque cursor stands for (base64 of ``offset:N``), or ``None`` if it is not one."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError both are
        return None
    number = text.removeprefix("offset:")
    return int(number) if text.startswith("offset:") and number.isdigit() else None


@dataclass
class SpotState(_Traffic):
    integrations: dict[int, dict[str, Any]] = field(default_factory=dict)
    """id → {id, name, integration_type}."""
    event_types: dict[int, dict[str, Any]] = field(default_factory=dict)
    """id → {id, integration_id, name, schema, duration, buffer, external_device_id_template}."""
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)
    """id → {id, integration_id, name, external_id, tags, camera_ids}."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Accepted events: {integration_event_type_id, integration_device_id, timestamp, attributes, duration, buffer}."""
    next_id: int = 101

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class SpotStandIn(_JsonServer[SpotState]):
    """Spot AI's Spot Connect API. Start with ``SpotStandIn()``; stop with ``close()``."""

    def __init__(self, api_key: str = "spot-key-do-not-log-0123456789abcdef") -> None:
        self._api_key = api_key
        integration = r"/v1/integrations/(\d+)"
        super().__init__(
            SpotState(),
            [
                ("POST", r"/v1/integrations", self._create_integration),
                ("GET", r"/v1/integrations", self._list_integrations),
                ("GET", integration, self._get_integration),
                ("POST", rf"{integration}/event-types", self._create_event_type),
                ("GET", rf"{integration}/event-types", self._list_event_types),
                ("GET", rf"{integration}/event-types/(\d+)", self._get_event_type),
                ("PUT", rf"{integration}/event-types/(\d+)", self._replace_event_type),
                ("DELETE", rf"{integration}/event-types/(\d+)", self._delete_event_type),
                ("POST", rf"{integration}/devices", self._create_device),
                ("GET", rf"{integration}/devices", self._list_devices),
                ("GET", rf"{integration}/devices/(\d+)", self._get_device),
                ("PUT", rf"{integration}/devices/(\d+)", self._update_device),
                ("POST", rf"{integration}/events", self._ingest),
                ("POST", rf"{integration}/events/import", self._import),
            ],
        )

    # ---- seeding (same validation as the API; raises ValueError when it would answer 422) ----------------------------

    def add_integration(self, name: str = "dt-connector", integration_type: str = "custom") -> int:
        body = {"name": name, "integration_type": integration_type}
        return self._seed(self._create_integration, (), body, "integration")

    def add_event_type(self, integration_id: int, name: str, schema: dict[str, Any], **optional: Any) -> int:
        """``optional``: ``duration``, ``buffer``, ``external_device_id_template``."""
        body = {"name": name, "schema": schema, **optional}
        return self._seed(self._create_event_type, (str(integration_id),), body, "integration_event_type")

    def _seed(self, handler: Handler, params: tuple[str, ...], body: dict[str, Any], key: str) -> int:
        with self._lock:
            try:
                status, reply = handler(_Call("POST", "", params, {}, Message(), body))
            except _Answer as answer:
                status, reply = answer.status, answer.body
        if status != 200:
            raise ValueError(f"the stand-in refused it ({status}): {reply}")
        created: int = reply[key]["id"]
        return created

    # ---- hooks ---------------------------------------------------------------------

    def _authorized(self, headers: Message) -> bool:
        return _same(_bearer(headers), self._api_key)

    def _unauthorized(self) -> Any:
        return {"name": "Unauthorized", "message": "invalid API key"}

    def _bad_json(self) -> Reply:
        return 400, {"name": "BadRequest", "message": "the body is not valid JSON"}

    # ---- helpers -------------------------------------------------------------------

    def _integration(self, call: _Call) -> int:
        integration_id = int(call.params[0])
        if integration_id not in self.state.integrations:
            raise _Answer(404, {"name": "NotFound", "message": f"integration {integration_id} not found"})
        return integration_id

    def _child(self, table: dict[int, dict[str, Any]], call: _Call, kind: str) -> dict[str, Any]:
        integration_id, child_id = self._integration(call), int(call.params[1])
        item = table.get(child_id)
        if item is None or item["integration_id"] != integration_id:
            raise _Answer(404, {"name": "NotFound", "message": f"{kind} {child_id} not found"})
        return item

    @staticmethod
    def _check(validator: Draft202012Validator, body: Any) -> None:
        if details := _details(validator, body):
            raise _Answer(*_validation_error(details))

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> Reply:
        limit_text, cursor = query.get("limit") or "50", query.get("cursor") or ""
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return _validation_error([{"field": "limit", "message": "must be from 1 to 100", "value": limit_text}])
        limit, offset = int(limit_text), _offset(cursor)
        if offset is None:
            return _validation_error([{"field": "cursor", "message": "is not a cursor", "value": cursor}])

        def encode(position: int) -> str:
            return base64.urlsafe_b64encode(f"offset:{position}".encode()).decode()

        items = sorted(items, key=lambda item: int(item["id"]))
        previous = encode(max(0, offset - limit)) if offset > 0 else None
        following = encode(offset + limit) if offset + limit < len(items) else None
        return 200, {key: items[offset : offset + limit], "prev": previous, "next": following}

    # ---- integrations --------------------------------------------------------------

    def _create_integration(self, call: _Call) -> Reply:
        self._check(_INTEGRATION_INPUT, call.body)
        integration_id = self.state.new_id()
        integration = {
            "id": integration_id,
            "name": call.body["name"],
            "integration_type": call.body.get("integration_type", "custom"),
        }
        self.state.integrations[integration_id] = integration
        return 200, {"integration": integration}

    def _list_integrations(self, call: _Call) -> Reply:
        return 200, {"integrations": list(self.state.integrations.values())}

    def _get_integration(self, call: _Call) -> Reply:
        return 200, {"integration": self.state.integrations[self._integration(call)]}

    # ---- event types ---------------------------------------------------------------

    def _event_type_from(self, body: Any, integration_id: int, type_id: int | None = None) -> dict[str, Any]:
        """The stored form of a create/replace body (a new id unless ``type_id``), or ``_Answer`` 422."""
        self._check(_EVENT_TYPE_INPUT, body)
        schema = body["schema"]
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = _field("schema", exc.absolute_path)
            detail = {"field": where, "message": f"not a valid JSON Schema: {exc.message}"}
            raise _Answer(*_validation_error([detail])) from None
        if schema.get("type") != "object":
            detail = {"field": "schema.type", "message": 'must be "object"', "value": schema.get("type")}
            raise _Answer(*_validation_error([detail]))
        if details := _template_details(body.get("external_device_id_template"), schema):
            raise _Answer(*_validation_error(details))
        return {
            "id": self.state.new_id() if type_id is None else type_id,
            "integration_id": integration_id,
            "name": body["name"],
            "schema": schema,
            "duration": body.get("duration"),
            "buffer": body.get("buffer"),
            "external_device_id_template": body.get("external_device_id_template"),
        }

    def _create_event_type(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        event_type = self._event_type_from(call.body, integration_id)
        self.state.event_types[event_type["id"]] = event_type
        return 200, {"integration_event_type": event_type}

    def _list_event_types(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        types = [t for t in self.state.event_types.values() if t["integration_id"] == integration_id]
        return self._page(types, call.query, "integration_event_types")

    def _get_event_type(self, call: _Call) -> Reply:
        return 200, {"integration_event_type": self._child(self.state.event_types, call, "event type")}

    def _replace_event_type(self, call: _Call) -> Reply:
        old = self._child(self.state.event_types, call, "event type")
        event_type = self._event_type_from(call.body, old["integration_id"], old["id"])
        self.state.event_types[old["id"]] = event_type
        return 200, {"integration_event_type": event_type}

    def _delete_event_type(self, call: _Call) -> Reply:
        event_type = self._child(self.state.event_types, call, "event type")
        del self.state.event_types[event_type["id"]]
        self.state.events[:] = [e for e in self.state.events if e["integration_event_type_id"] != event_type["id"]]
        return 200, {"integration_event_type": event_type}

    # ---- devices -------------------------------------------------------------------

    def _new_device(self, integration_id: int, name: str, external_id: str | None, **extra: Any) -> dict[str, Any]:
        device_id = self.state.new_id()
        device = {
            "id": device_id,
            "integration_id": integration_id,
            "name": name,
            "external_id": external_id,
            "tags": extra.get("tags", []),
            "camera_ids": extra.get("camera_ids", []),
        }
        self.state.devices[device_id] = device
        return device

    def _device_by_external_id(self, integration_id: int, external_id: str) -> dict[str, Any] | None:
        for device in self.state.devices.values():
            if device["integration_id"] == integration_id and device["external_id"] == external_id:
                return device
        return None

    def _create_device(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        self._check(_DEVICE_CREATE, call.body)
        external_id = call.body.get("external_id")
        if external_id is not None and self._device_by_external_id(integration_id, external_id):
            detail = {"field": "external_id", "message": "already used in this integration", "value": external_id}
            return _validation_error([detail])
        extra = {k: call.body[k] for k in ("tags", "camera_ids") if k in call.body}
        return 200, {"integration_device": self._new_device(integration_id, call.body["name"], external_id, **extra)}

    def _list_devices(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        devices = [d for d in self.state.devices.values() if d["integration_id"] == integration_id]
        return self._page(devices, call.query, "integration_devices")

    def _get_device(self, call: _Call) -> Reply:
        return 200, {"integration_device": self._child(self.state.devices, call, "device")}

    def _update_device(self, call: _Call) -> Reply:
        device = self._child(self.state.devices, call, "device")
        self._check(_DEVICE_UPDATE, call.body)
        device["name"] = call.body["name"]
        if "tags" in call.body:
            device["tags"] = call.body["tags"]
        return 200, {"integration_device": device}

    # ---- events --------------------------------------------------------------------

    def _event_details(self, integration_id: int, event: dict[str, Any], prefix: str) -> list[Detail]:
        """Timestamp, event type and attribute problems of a body that already passed its request schema."""
        details = _timestamp_details(event["timestamp"], _field(prefix, ["timestamp"]))
        type_id = event["integration_event_type_id"]
        event_type = self.state.event_types.get(type_id)
        if event_type is None or event_type["integration_id"] != integration_id:
            where = _field(prefix, ["integration_event_type_id"])
            return [*details, {"field": where, "message": "no such event type in this integration", "value": type_id}]
        validator = Draft202012Validator(event_type["schema"])
        return details + _details(validator, event["attributes"], _field(prefix, ["attributes"]))

    def _store(self, event: dict[str, Any], device_id: int) -> None:
        event_type = self.state.event_types[event["integration_event_type_id"]]
        self.state.events.append(
            {
                "integration_event_type_id": event["integration_event_type_id"],
                "integration_device_id": device_id,
                "timestamp": event["timestamp"],
                "attributes": event["attributes"],
                "duration": event.get("duration", event_type["duration"]),
                "buffer": event.get("buffer", event_type["buffer"]),
            }
        )

    def _device_details(self, integration_id: int, device_id: int, where: str) -> list[Detail]:
        device = self.state.devices.get(device_id)
        if device is None or device["integration_id"] != integration_id:
            return [{"field": where, "message": "no such device in this integration", "value": device_id}]
        return []

    def _ingest(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        self._check(_INGEST, call.body)
        event: dict[str, Any] = call.body
        details = self._event_details(integration_id, event, "")
        if "integration_device_id" in event:
            details += self._device_details(integration_id, event["integration_device_id"], "integration_device_id")
        if details:
            return _validation_error(details)
        device_id = self._resolve_device(integration_id, event)
        if device_id is None:
            message = "no device: give integration_device_id or device_external_id, or a type with a template"
            return 400, {"name": "BadRequest", "message": message}
        self._store(event, device_id)
        return 202, None

    def _resolve_device(self, integration_id: int, event: dict[str, Any]) -> int | None:
        if "integration_device_id" in event:
            device_id: int = event["integration_device_id"]
            return device_id
        external_id: str | None = event.get("device_external_id")
        template = self.state.event_types[event["integration_event_type_id"]]["external_device_id_template"]
        if external_id is None and template:
            external_id = _render(template, event["attributes"])
            if external_id is not None and not 1 <= len(external_id) <= 255:
                detail = {"field": "device_external_id", "message": "the template must give 1 to 255 characters"}
                raise _Answer(*_validation_error([{**detail, "value": external_id}]))
        if external_id is None:
            return None
        device = self._device_by_external_id(integration_id, external_id)
        if device is None:
            device = self._new_device(integration_id, external_id[:40], external_id)
        found: int = device["id"]
        return found

    def _import(self, call: _Call) -> Reply:
        integration_id = self._integration(call)
        self._check(_IMPORT, call.body)
        events: list[dict[str, Any]] = call.body["integration_events"]
        details: list[Detail] = []
        for index, event in enumerate(events):
            prefix = f"integration_events[{index}]"
            details += self._event_details(integration_id, event, prefix)
            device_field = _field(prefix, ["integration_device_id"])
            details += self._device_details(integration_id, event["integration_device_id"], device_field)
        if details:
            return _validation_error(details)
        for event in events:
            self._store(event, event["integration_device_id"])
        return 202, None
