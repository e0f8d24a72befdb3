"""``dt-connector setup spot`` and ``dt-connector setup moost``: provision the downstreams.

Both read what is there, print the plan, and (without ``--dry-run``) carry it out; a second run
finds nothing to change and says so. Exit status 0 when everything the mapping forwards can be
delivered, 1 when something was left undone (each such line says what to fix), 2 for configuration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import click
import requests
from redis import Redis

from connector.cli.commands import label_keys, pushed_label_keys_of
from connector.cli.environment import tool_environ
from connector.core.errors import ConfigError
from connector.core.redis_conn import connect_to
from connector.core.settings import DtApiSettings, Settings
from connector.dt.api import DtApi, DtApiError
from workers.deliver.http import DEFAULT_TIMEOUT_S, ApiError
from workers.moost.api import MoostApi, MoostTokens
from workers.moost.devices import DtDevice
from workers.moost.setup import MoostSetup
from workers.spot.api import SpotApi
from workers.spot.setup import SetupError, SpotSetup
from workers.translate.mapping import EventMapping, checked_mapping


@click.group("setup")
def setup() -> None:
    """Provision Spot AI (integration, event types) and MOOST (buildings, devices)."""


@setup.command("spot")
@click.option("--dry-run", is_flag=True, help="print the plan; change nothing")
@click.option("--name", default="Disruptive Technologies", show_default=True, help="integration to find or create")
def setup_spot(dry_run: bool, name: str) -> int:
    """Find or create the Spot AI integration and one event type per DT type the mapping forwards."""
    return run_setup_spot(os.environ, dry_run=dry_run, name=name)


@setup.command("moost")
@click.option("--dry-run", is_flag=True, help="print the plan; change nothing")
def setup_moost(dry_run: bool) -> int:
    """Create each DT device's MOOST building and register the device in it."""
    return run_setup_moost(os.environ, dry_run=dry_run)


def run_setup_spot(environ: Mapping[str, str], *, dry_run: bool, name: str) -> int:
    settings, mapping, redis = _context(environ)
    if not settings.spot_api_key:
        raise ConfigError("SPOT_API_KEY is not set (setup spot works with your Spot AI API key)")
    keys, keys_from = _pushed_label_keys(environ)
    spot = SpotSetup(
        SpotApi(settings.spot_base_url, settings.spot_api_key), redis, mapping,
        configured_integration=settings.spot_integration_id,
    )  # fmt: skip
    try:
        plan = spot.plan(label_keys=keys, integration_name=name)
        how = {"configured": "SPOT_INTEGRATION_ID", "recorded": "recorded by an earlier run", "found": "found by name"}
        if plan.integration_action == "create":
            print(f"Spot AI: create integration {plan.integration_name!r}")
        else:
            print(f"Spot AI: integration {plan.integration_id} {plan.integration_name!r} "
                  f"({how[plan.integration_action]})")  # fmt: skip
        print(f"  attributes carry labels {', '.join(keys) or '(none)'} ({keys_from})")
        for step in plan.steps:
            print(f"  {step.describe()}")
        if _go_ahead("spot", changes=plan.changes, dry_run=dry_run):
            plan = spot.apply(plan)
            counts = {a: sum(s.action == a for s in plan.steps) for a in ("create", "update", "unchanged")}
            print(
                f"setup spot: {counts['create']} created, {counts['update']} updated, {counts['unchanged']} up to "
                f"date; integration {plan.integration_id} and {len(plan.type_ids())} event type ids recorded in "
                "Redis, where the workers read them (within 30 s)"
            )
    except (ApiError, SetupError) as exc:
        print(f"setup spot: {exc}", file=sys.stderr)
        return 1
    for step in plan.errors:
        print(f"setup spot: fix the mapping: {step.describe()}", file=sys.stderr)
    return 1 if plan.errors else 0


def run_setup_moost(environ: Mapping[str, str], *, dry_run: bool) -> int:
    settings, mapping, redis = _context(environ)
    if not (settings.moost_client_id and settings.moost_client_secret and settings.moost_customer_id):
        raise ConfigError("MOOST_CLIENT_ID, MOOST_CLIENT_SECRET and MOOST_CUSTOMER_ID must be set")
    if not DtApiSettings.configured(environ):
        raise ConfigError("setup moost reads your devices from DT: set DT_SERVICE_ACCOUNT_KEY_ID, "
                          "DT_SERVICE_ACCOUNT_SECRET, DT_SERVICE_ACCOUNT_EMAIL and DT_PROJECT_ID")  # fmt: skip
    try:
        devices = [DtDevice.from_api(d) for d in DtApi(DtApiSettings.from_env(environ)).devices()]
        moost = MoostSetup(_moost_api(settings, redis), redis, mapping, customer_id=settings.moost_customer_id)
        plan = moost.plan(devices)
        registered = sum(len(step.devices) for step in plan.steps if step.action != "blocked")
        print(f"MOOST: {len(devices)} DT devices; {registered} belong in {len(plan.steps)} building(s)")
        for step in plan.steps:
            print(f"  {step.describe()}")
        for device_id, reason in plan.unregistered:
            print(f"  device {device_id} not registered: {reason}")
        if _go_ahead("moost", changes=plan.changes, dry_run=dry_run):
            moost.apply(plan)
            created = sum(step.action == "create" for step in plan.steps)
            written = sum(step.action in ("create", "update") for step in plan.steps)
            print(f"setup moost: {created} building(s) created, {written} device set(s) written")
    except ApiError as exc:
        hint = " (check MOOST_CLIENT_ID and MOOST_CLIENT_SECRET)" if exc.status == 401 else ""
        print(f"setup moost: {exc}{hint}", file=sys.stderr)
        return 1
    except DtApiError as exc:
        print(f"setup moost: DT: {exc}", file=sys.stderr)
        return 1
    for step in plan.blocked:
        print(f"setup moost: {step.describe()}", file=sys.stderr)
    return 1 if plan.blocked else 0


def _go_ahead(what: str, *, changes: bool, dry_run: bool) -> bool:
    """Whether to apply the printed plan; says why not."""
    if not changes:
        print(f"setup {what}: nothing to change")
    elif dry_run:
        print(f"setup {what}: dry run, nothing changed")
    return changes and not dry_run


def _pushed_label_keys(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """The label keys live pushes carry (the Data Connector's when DT's API is configured)."""
    if DtApiSettings.configured(environ):
        try:
            return pushed_label_keys_of(DtApi(DtApiSettings.from_env(environ)), environ)
        except DtApiError as exc:
            print(f"warning: could not read the Data Connector's labels ({exc}); using the mapping's", file=sys.stderr)
    return label_keys("", environ), "the mapping's, as `connector create` sets them"


def moost_tokens(settings: Settings, redis: Redis) -> MoostTokens:
    """MOOST's token as the workers get and share it (through Redis)."""
    return MoostTokens(redis, settings, requests.Session(), DEFAULT_TIMEOUT_S)


def _moost_api(settings: Settings, redis: Redis) -> MoostApi:
    tokens = moost_tokens(settings, redis)
    return MoostApi(settings.moost_base_url, tokens.require, renew=tokens.renewed)


def _context(environ: Mapping[str, str]) -> tuple[Settings, EventMapping, Redis]:
    settings = Settings.from_env(tool_environ(environ))
    mapping = checked_mapping(settings.mapping_path)
    redis = connect_to(settings)
    return settings, mapping, redis
