"""``dt-connector doctor``: check a deployment live, one line per piece with a verdict and the fix.

Checks what is configured, talking to the real services with the deployment's own settings:

* Redis: reachable.
* DT: the service account reads the project; the Data Connector is active, points at this
  deployment's URL (``--url``, else Heroku's ``HEROKU_APP_DEFAULT_DOMAIN_NAME``) and forwards the
  label keys and event types the mapping reads.
* MOOST: the credentials get a token, for the configured customer; every building a DT device
  belongs in exists and lists the device.
* Spot AI: the API key works; the integration and each forwarded type's event type exist, and each
  schema accepts what the connector sends.

``FAIL`` is anything that makes events dead-letter or go nowhere; ``warn`` is worth fixing but loses
nothing. The exit status is 1 when any check fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import click
import jsonschema
import jwt
from redis import Redis
from redis.exceptions import RedisError

from connector.cli.commands import label_keys
from connector.cli.environment import tool_environ
from connector.cli.setup import moost_tokens
from connector.core.events import DT_EVENT_TYPES
from connector.core.redis_conn import connect_to
from connector.core.settings import DtApiSettings, PlatformSettings, Settings
from connector.dt.api import DtApi, DtApiError
from workers.deliver.http import ApiError
from workers.moost.api import MoostApi
from workers.moost.devices import DtDevice
from workers.moost.setup import plan_buildings
from workers.spot import ids as spot_ids
from workers.spot.api import SpotApi
from workers.spot.schema import differences, event_type_body, example_attributes, forwarded_to_spot
from workers.translate.mapping import EventMapping, checked_mapping

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Verdict:
    piece: str
    level: Level
    finding: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n              fix: {self.fix}" if self.fix else ""
        return f"{self.level:<4}  {self.piece:<5}  {self.finding}{fix}"


@click.command("doctor")
@click.option("--url", help="the public URL DT should push to (default: Heroku's app domain + /dt/events)")
def doctor(url: str | None) -> int:
    """Check the deployment live: Redis, DT, MOOST and Spot AI, each with a verdict and the fix."""
    verdicts = run_doctor(os.environ, url=url)
    for verdict in verdicts:
        print(verdict.line())
    failed = sum(v.level == "FAIL" for v in verdicts)
    warned = sum(v.level == "warn" for v in verdicts)
    print(f"doctor: {len(verdicts)} checks, {failed} failed, {warned} warnings", file=sys.stderr if failed else None)
    return 1 if failed else 0


def run_doctor(environ: Mapping[str, str], *, url: str | None = None) -> list[Verdict]:
    """Every check's verdict, in order (configuration errors raise ``ConfigError`` first)."""
    settings = Settings.from_env(tool_environ(environ))
    mapping = checked_mapping(settings.mapping_path)
    redis = connect_to(settings)
    verdicts = [_redis(redis)]
    devices: list[dict[str, Any]] | None = None
    connector: dict[str, Any] | None = None
    dt_api = DtApi(DtApiSettings.from_env(environ)) if DtApiSettings.configured(environ) else None
    if dt_api is None:
        verdicts.append(Verdict("DT", "warn", "DT's REST API is not configured, so the Data Connector and devices "
                                "are not checked", "set DT_SERVICE_ACCOUNT_KEY_ID, _SECRET, _EMAIL and DT_PROJECT_ID"))
    else:
        devices, connector, found = _dt(dt_api, mapping, settings, environ, url)
        verdicts += found
    if "moost" in settings.destinations:
        verdicts += _moost(settings, mapping, redis, devices)
    if "spot" in settings.destinations:
        # The labels pushes carry: the Data Connector's (as read above), else what `connector create` sets.
        keys = [str(k) for k in connector.get("labels") or []] if connector is not None else label_keys("", environ)
        verdicts += _spot(settings, mapping, redis, keys)
    if not {"moost", "spot"} & set(settings.destinations):
        verdicts.append(Verdict("fwd", "warn", f"forwarding only to {', '.join(settings.destinations)}",
                                "set MOOST_* or SPOT_API_KEY to forward to MOOST or Spot AI"))  # fmt: skip
    return verdicts


def _guard(piece: str, fix: str, check: Callable[[], list[Verdict]]) -> list[Verdict]:
    try:
        return check()
    except (ApiError, DtApiError) as exc:
        return [Verdict(piece, "FAIL", str(exc), fix)]


def _redis(redis: Redis) -> Verdict:
    try:
        redis.ping()
    except RedisError as exc:
        return Verdict("Redis", "FAIL", f"unreachable ({type(exc).__name__})", "check REDIS_URL")
    return Verdict("Redis", "ok", "reachable")


# ---- DT -----------------------------------------------------------------------------------------


def _dt(
    api: DtApi, mapping: EventMapping, settings: Settings, environ: Mapping[str, str], url: str | None
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None, list[Verdict]]:
    """DT's verdicts, with the device list and the Data Connector when they could be read."""
    project = api.settings.project_id
    try:
        devices = list(api.devices())
    except DtApiError as exc:
        fix = "check DT_SERVICE_ACCOUNT_* and DT_PROJECT_ID; the account needs a role in the project"
        return None, None, [Verdict("DT", "FAIL", f"the service account cannot read project {project}: {exc}", fix)]
    verdicts = [Verdict("DT", "ok", f"the service account reads project {project} ({len(devices)} devices)")]
    connector_id = api.settings.connector_id
    if not connector_id:
        verdicts.append(Verdict("DT", "warn", "DT_CONNECTOR_ID is not set, so the Data Connector is not checked",
                                "set DT_CONNECTOR_ID (dt-connector connector create prints it)"))  # fmt: skip
        return devices, None, verdicts
    try:
        connector = api.get_connector(connector_id)
    except DtApiError as exc:
        return devices, None, [*verdicts, Verdict("DT", "FAIL", str(exc), "check DT_CONNECTOR_ID")]
    return devices, connector, verdicts + _data_connector(connector_id, connector, mapping, settings, environ, url)



def _data_connector(
    connector_id: str, connector: dict[str, Any], mapping: EventMapping, settings: Settings,
    environ: Mapping[str, str], url: str | None,
) -> list[Verdict]:  # fmt: skip
    verdicts = []
    status = connector.get("status", "ACTIVE")
    if status != "ACTIVE":
        verdicts.append(Verdict("DT", "FAIL", f"Data Connector {connector_id} is {status}: DT pushes nothing",
                                f"dt-connector connector update --connector {connector_id} --status ACTIVE"))
    pushes_to = str((connector.get("httpConfig") or {}).get("url", ""))
    expected = url or _heroku_url(environ)
    if expected is None:
        verdicts.append(Verdict("DT", "warn", f"Data Connector {connector_id} pushes to {pushes_to}; this "
                                "deployment's URL is unknown", "pass --url https://<your-app>/dt/events"))
    elif pushes_to.rstrip("/") != expected.rstrip("/"):
        verdicts.append(Verdict("DT", "FAIL", f"Data Connector {connector_id} pushes to {pushes_to}, not to {expected}",
                                f"dt-connector connector update --connector {connector_id} --url {expected}"))
    else:
        verdicts.append(Verdict("DT", "ok", f"Data Connector {connector_id} pushes to {expected}"))
    forwarded = set(connector.get("labels") or [])
    needed = ["name", mapping.building_label if "moost" in settings.destinations else "",
              mapping.spot_device_label if "spot" in settings.destinations else ""]  # fmt: skip
    missing = [key for key in needed if key and key not in forwarded]
    if missing:
        verdicts.append(Verdict("DT", "FAIL", f"the Data Connector does not forward label(s) {', '.join(missing)} the "
                                "mapping reads (devices lose their building or name)",
                                f"dt-connector connector update --connector {connector_id} --labels "
                                f"{','.join(missing)}"))  # fmt: skip
    else:
        verdicts.append(Verdict("DT", "ok", "the Data Connector forwards the labels the mapping reads"))
    chosen = set(connector.get("events") or [])  # empty: every type
    mapped = mapping.forwarded_types(settings.destinations)
    left_out = [t for t in DT_EVENT_TYPES if t in mapped and chosen and t not in chosen]
    if left_out:
        verdicts.append(Verdict("DT", "warn", f"the Data Connector leaves out {', '.join(left_out)}, which the "
                                "mapping forwards", f"dt-connector connector update --connector {connector_id} "
                                "--events mapped"))  # fmt: skip
    return verdicts


def _heroku_url(environ: Mapping[str, str]) -> str | None:
    domain = PlatformSettings.from_env(environ).app_domain
    return f"https://{domain}/dt/events" if domain else None


# ---- MOOST --------------------------------------------------------------------------------------


def _moost(
    settings: Settings, mapping: EventMapping, redis: Redis, devices: list[dict[str, Any]] | None
) -> list[Verdict]:
    tokens = moost_tokens(settings, redis)
    try:
        token = tokens.require(renew=True)  # a new one: the credentials themselves are checked
    except ApiError as exc:
        if exc.status == 401:
            return [Verdict("MOOST", "FAIL", "MOOST refuses the client credentials (401)",
                            "check MOOST_CLIENT_ID and MOOST_CLIENT_SECRET (MOOST Admin Portal, Settings)")]
        return [Verdict("MOOST", "FAIL", f"no token: {exc}", "check MOOST_BASE_URL; retry later if MOOST is down")]
    verdicts = [_moost_customer(token, settings.moost_customer_id)]
    api = MoostApi(settings.moost_base_url, lambda: token, renew=tokens.renewed)
    verdicts += _guard("MOOST", "retry later; check the credentials' rights",
                       lambda: _moost_buildings(api, mapping, settings, devices))  # fmt: skip
    return verdicts


def _moost_customer(token: str, customer_id: str) -> Verdict:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})  # only reading which customer it is for
    except jwt.PyJWTError:
        return Verdict("MOOST", "ok", "the credentials get a token (its customer cannot be read from it)")
    token_customer = claims.get("customerId")
    if token_customer and token_customer != customer_id:
        return Verdict("MOOST", "FAIL", f"the credentials are for customer {token_customer}, not MOOST_CUSTOMER_ID "
                       f"{customer_id}: every event would be refused", "set MOOST_CUSTOMER_ID to the credentials' "
                       "customer, or use that customer's credentials")  # fmt: skip
    return Verdict("MOOST", "ok", f"the credentials get a token for customer {customer_id}")


def _moost_buildings(
    api: MoostApi, mapping: EventMapping, settings: Settings, devices: list[dict[str, Any]] | None
) -> list[Verdict]:
    if devices is None:
        return [Verdict("MOOST", "warn", "buildings not checked: DT's device list is not available",
                        "configure DT's REST API (see the DT line above)")]  # fmt: skip
    plan = plan_buildings([DtDevice.from_api(d) for d in devices], mapping, buildings=api.buildings(),
                          customer_id=settings.moost_customer_id)  # fmt: skip
    verdicts = []
    for step in plan.steps:
        if step.action in ("create", "blocked"):
            fix = "dt-connector setup moost" if step.action == "create" else step.reason
            verdicts.append(Verdict("MOOST", "FAIL", f"building {step.building!r} does not exist: events of its "
                                    f"{len(step.devices)} device(s) are refused", fix))  # fmt: skip
        elif step.action == "update":
            verdicts.append(Verdict("MOOST", "warn", step.describe() +
                                    " in its device set", "dt-connector setup moost"))  # fmt: skip
    if not verdicts:
        count = sum(len(step.devices) for step in plan.steps)
        verdicts.append(Verdict("MOOST", "ok", f"{len(plan.steps)} building(s) exist and list their {count} device(s)"))
    return verdicts


# ---- Spot AI ------------------------------------------------------------------------------------


def _spot(settings: Settings, mapping: EventMapping, redis: Redis, keys: list[str]) -> list[Verdict]:
    api = SpotApi(settings.spot_base_url, settings.spot_api_key)
    return _guard("Spot", "check SPOT_API_KEY and SPOT_BASE_URL", lambda: _spot_checks(api, settings, mapping,
                                                                                       redis, keys))  # fmt: skip


def _spot_checks(
    api: SpotApi, settings: Settings, mapping: EventMapping, redis: Redis, keys: list[str]
) -> list[Verdict]:


    integration = settings.spot_integration_id or spot_ids.recorded_integration(redis)
    if not integration:
        return [Verdict("Spot", "FAIL", "no integration: SPOT_INTEGRATION_ID is unset and setup has not run; "
                        "events wait for retries", "dt-connector setup spot")]  # fmt: skip
    found = api.integration(integration)
    if found is None:
        return [Verdict("Spot", "FAIL", f"integration {integration} does not exist for this API key",
                        "dt-connector setup spot (unset SPOT_INTEGRATION_ID to have one made)")]  # fmt: skip
    verdicts = [Verdict("Spot", "ok", f"integration {integration} {found.get('name', '')!r} exists")]
    existing = {int(t["id"]): t for t in api.event_types(integration)}
    effective = mapping.with_spot_ids(spot_ids.recorded_event_types(redis, integration))
    stale, good = [], 0
    for event_type in forwarded_to_spot(mapping):
        rule = effective.spot[event_type]
        current = existing.get(rule.event_type_id)
        if current is None:
            what = f"event type {rule.event_type_id}" if rule.event_type_id else "no event type"
            verdicts.append(Verdict("Spot", "FAIL", f"{event_type}: {what} in integration {integration}; its events "
                                    "are not delivered", "dt-connector setup spot"))  # fmt: skip
            continue
        errors = list(jsonschema.Draft202012Validator(current.get("schema") or {}).iter_errors(
            example_attributes(event_type, keys)))  # fmt: skip
        if errors:
            verdicts.append(Verdict("Spot", "FAIL", f"{event_type}: event type {rule.event_type_id}'s schema rejects "
                                    f"what the connector sends ({errors[0].message})", "dt-connector setup spot"))
        elif differences(current, event_type_body(event_type, rule, mapping, keys)):
            stale.append(event_type)
        else:
            good += 1
    if stale:
        verdicts.append(Verdict("Spot", "warn", f"event types of {', '.join(stale)} accept what is sent but differ "
                                "from what setup would write", "dt-connector setup spot"))  # fmt: skip
    if good:
        verdicts.append(Verdict("Spot", "ok", f"{good} event type(s) exist with the schemas setup writes"))
    return verdicts
