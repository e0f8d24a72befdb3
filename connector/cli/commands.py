"""The user-facing commands around the service: ``send-test-event``, ``connector``, ``backfill``.

``connector.cli.main`` declares the commands; these functions do the work and return an exit
status. Secrets are printed only where the user asked for one to be made (a generated
signature secret is shown once, with the ``heroku config:set`` line that installs it).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from connector.cli.dev.secret import dev_secret_path, read_dev_secret
from connector.cli.dev.send_test_event import DtSimulator, LocalIdentity, load_or_create_key
from connector.cli.environment import tool_environ
from connector.core.enqueue import Enqueuer
from connector.core.errors import ConfigError
from connector.core.events import DT_EVENT_TYPES
from connector.core.redis_conn import connect_to
from connector.core.settings import MIN_SECRET_CHARS, DtApiSettings, Settings
from connector.dt.api import DtApi, DtApiError
from connector.dt.backfill import Backfill, window
from workers.translate.mapping import EventMapping, load_mapping

DEV_ORG = "dt-connector-dev-org"
DEV_KID = "dt-connector-dev"


def _connector_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``connector create`` and ``connector update`` share."""
    for option in reversed([
        click.option("--secret", help="signature secret to set (default on create: generated)"),
        click.option("--secret-from-env", is_flag=True, help="use DT_SIGNATURE_SECRET's first secret"),
        click.option("--events", help="'all' (default on create), 'mapped', or a comma list of event types"),
        click.option("--labels", default="", help="extra label keys to include (name and the mapping's are always)"),
        click.option("--connector", "connector_id", help="Data Connector id (default: DT_CONNECTOR_ID)"),
        click.option("--app", default="<your-app>", help="Heroku app name for the printed config:set line"),
    ]):  # fmt: skip
        command = option(command)
    return command


@click.command("send-test-event")
@click.option("--type", "type_", default="temperature", help="event type, comma list, or 'all'")
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--url", default="http://127.0.0.1:5000/dt/events", show_default=True)
@click.option("--duplicate-rate", type=float, default=0.0, help="share of events delivered twice (0..1)")
@click.option("--secret", help="signature secret (default: DT_SIGNATURE_SECRET, else the dev secret)")
@click.option("--asymmetric", is_flag=True, help="also sign DT-Asymmetric-Signature with a local key")
@click.option("--oidc-port", type=int, default=8765, show_default=True, help="port of the local identity")
@click.option("--retry-for", type=float, default=60.0, show_default=True, help="seconds to retry non-200 answers")
@click.option("--seed", type=int, help="make the events reproducible")
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".dt-connector"), show_default=True)
def send_test_event(**options: Any) -> int:
    """Act as DT: push signed test events to a receiver."""
    return run_send_test_event(SimpleNamespace(type=options.pop("type_"), **options), os.environ)


@click.group("connector")
def connector() -> None:
    """Manage the DT Data Connector through DT's REST API."""


@connector.command("create")
@click.option("--url", required=True, help="the public https URL of POST /dt/events")
@click.option("--name", default="dt-connector", show_default=True, help="display name")
@_connector_options
def connector_create(**options: Any) -> int:
    """Create a Data Connector pushing to --url."""
    return run_connector(_connector_args("create", options), os.environ)


@connector.command("update")
@click.option("--url", help="the public https URL of POST /dt/events")
@click.option("--status", type=click.Choice(["ACTIVE", "USER_DISABLED"]))
@click.option("--rotate-secret", is_flag=True, help="generate a new secret (the old one stays valid here)")
@_connector_options
def connector_update(**options: Any) -> int:
    """Change the URL, secret, events, labels or status."""
    return run_connector(_connector_args("update", options), os.environ)


@connector.command("show")
@click.option("--connector", "connector_id", help="Data Connector id (default: DT_CONNECTOR_ID)")
def connector_show(connector_id: str | None) -> int:
    """Show the Data Connector (its secret hidden)."""
    return run_connector(SimpleNamespace(action="show", connector=connector_id), os.environ)


@connector.command("metrics")
@click.option("--connector", "connector_id", help="Data Connector id (default: DT_CONNECTOR_ID)")
def connector_metrics(connector_id: str | None) -> int:
    """DT's delivery figures for the Data Connector (last 3 hours)."""
    return run_connector(SimpleNamespace(action="metrics", connector=connector_id), os.environ)


def _connector_args(action: str, options: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(action=action, connector=options.pop("connector_id"), **options)


@click.command("backfill")
@click.option("--since", help="how far back, e.g. 24h, 90m, 7d")
@click.option("--from", "start", help="window start, RFC 3339")
@click.option("--to", "end", help="window end, RFC 3339 (default: now)")
@click.option("--device", help="only this device id")
def backfill(**options: Any) -> int:
    """Queue missed events from DT's event history (resumable)."""
    return run_backfill(SimpleNamespace(**options), os.environ)


# ---- send-test-event -----------------------------------------------------------------------


def run_send_test_event(args: Any, environ: Mapping[str, str]) -> int:
    event_types = _event_types(args.type)
    secret = args.secret or _first_secret(environ) or _dev_secret(args.state_dir, required=not args.asymmetric)
    rng = random.Random(args.seed)
    sender = DtSimulator(args.url, secret=secret, rng=rng, retry_for_s=args.retry_for, out=sys.stdout)
    if args.asymmetric:
        key = load_or_create_key(args.state_dir / "dev-es256.pem")
        with LocalIdentity(key, kid=DEV_KID, org_id=DEV_ORG, port=args.oidc_port) as identity:
            print(
                "send-test-event: signing DT-Asymmetric-Signature with a local key; the receiver needs "
                f"DT_ASYMMETRIC_SIGNATURE=on DT_ORG_ID={DEV_ORG} DT_OIDC_DISCOVERY_URL={identity.discovery_url}",
                flush=True,
            )
            sender.signer = identity.signer
            report = sender.run(event_types, count=args.count, duplicate_rate=args.duplicate_rate)
    else:
        report = sender.run(event_types, count=args.count, duplicate_rate=args.duplicate_rate)
    answers = ", ".join(f"{status}: {n}" for status, n in sorted(report.answers.items()))
    print(
        f"send-test-event: {report.sent} events ({report.duplicates_sent} delivered twice), "
        f"{report.attempts} requests; answers {answers}; {len(report.acknowledged)} acknowledged, "
        f"{len(report.gave_up)} given up"
    )
    return 0 if not report.gave_up else 1


def _event_types(text: str) -> list[str]:
    if text == "all":
        return list(DT_EVENT_TYPES)
    types = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in DT_EVENT_TYPES]
    if unknown or not types:
        raise ConfigError(f"--type: unknown event type(s) {unknown}; known: all, {', '.join(DT_EVENT_TYPES)}")
    return types


def _first_secret(environ: Mapping[str, str]) -> str | None:
    first = environ.get("DT_SIGNATURE_SECRET", "").split(",")[0].strip()
    return first or None


def _dev_secret(state_dir: Path, *, required: bool) -> str | None:
    secret = read_dev_secret(state_dir)
    if secret is None and required:
        path = dev_secret_path(state_dir)
        raise ConfigError(f"no signature secret: set DT_SIGNATURE_SECRET, pass --secret, or run dev first ({path})")
    return secret


# ---- connector ------------------------------------------------------------------------------


def run_connector(args: Any, environ: Mapping[str, str], api: DtApi | None = None) -> int:
    api = api or DtApi(DtApiSettings.from_env(environ))
    try:
        if args.action == "create":
            return _create(args, environ, api)
        connector_id = args.connector or api.settings.connector_id
        if not connector_id:
            raise ConfigError("which Data Connector? pass --connector or set DT_CONNECTOR_ID")
        if args.action == "show":
            print(json.dumps(redacted(api.get_connector(connector_id)), indent=2))
        elif args.action == "metrics":
            metrics = api.connector_metrics(connector_id).get("metrics", {})
            print(
                f"last 3 hours: {metrics.get('successCount', 0)} delivered, {metrics.get('errorCount', 0)} "
                f"failed, p99 latency {metrics.get('latency99p', '?')}"
            )
        else:
            return _update(args, environ, api, connector_id)
        return 0
    except DtApiError as exc:
        print(f"dt-connector connector {args.action}: {exc}", file=sys.stderr)
        return 1


def _create(args: Any, environ: Mapping[str, str], api: DtApi) -> int:
    _require_https(args.url)
    secret, generated = _chosen_secret(args, environ, generate=True)
    body = {
        "displayName": args.name,
        "type": "HTTP_PUSH",
        "status": "ACTIVE",
        "events": _event_filter(args.events, environ),
        "labels": label_keys(args.labels, environ),
        "httpConfig": {"url": args.url, "signatureSecret": secret},
    }
    created = api.create_connector(body)
    connector_id = str(created.get("name", "")).rpartition("/")[2]
    print(f"created Data Connector {connector_id} ({created.get('displayName', args.name)}) → {args.url}")
    print(f"  events: {', '.join(body['events']) or 'all'}; labels: {', '.join(body['labels'])}")
    print(f"  DT_CONNECTOR_ID={connector_id}")
    if generated and secret:
        _show_secret_once(secret, args.app, previous=None)
    return 0


def _update(args: Any, environ: Mapping[str, str], api: DtApi, connector_id: str) -> int:
    changes: dict[str, Any] = {}
    http: dict[str, Any] = {}
    if args.url:
        _require_https(args.url)
        http["url"] = args.url
    secret, generated = _chosen_secret(args, environ, generate=args.rotate_secret)
    if secret:
        http["signatureSecret"] = secret
    if http:
        changes["httpConfig"] = http
    if args.events:
        changes["events"] = _event_filter(args.events, environ)
    if args.labels:
        changes["labels"] = label_keys(args.labels, environ)
    if args.status:
        changes["status"] = args.status
    if not changes:
        raise ConfigError("nothing to update: give --url, --secret/--rotate-secret, --events, --labels or --status")
    api.update_connector(connector_id, changes)
    print(f"updated Data Connector {connector_id}: {', '.join(_describe(changes))}")
    if generated and secret:
        _show_secret_once(secret, args.app, previous=_first_secret(environ))
    return 0


def _mapping(environ: Mapping[str, str]) -> EventMapping:
    """The mapping the workers use (``CONNECTOR_MAPPING``, else the shipped one)."""
    return load_mapping(environ.get("CONNECTOR_MAPPING", "").strip())


def pushed_label_keys_of(api: DtApi, environ: Mapping[str, str]) -> tuple[list[str], str]:
    """The label keys live pushes carry: the Data Connector's (``DT_CONNECTOR_ID``), else what
    ``connector create`` would set (the mapping's)."""
    connector_id = api.settings.connector_id
    if connector_id:
        return [str(k) for k in api.get_connector(connector_id).get("labels") or []], f"Data Connector {connector_id}"
    return label_keys("", environ), "the mapping's, as `connector create` sets them"


def label_keys(extra: str, environ: Mapping[str, str]) -> list[str]:
    """``name``, the labels the mapping reads, then ``extra`` (comma list), without repeats."""
    mapping = _mapping(environ)
    keys = ["name", mapping.building_label, mapping.spot_device_label, *extra.split(",")]
    return list(dict.fromkeys(k.strip() for k in keys if k.strip()))


def _event_filter(text: str | None, environ: Mapping[str, str]) -> list[str]:
    if not text or text == "all":
        return []  # DT: an empty list means every event type
    if text == "mapped":
        forwarded = _mapping(environ).forwarded_types()
        return [t for t in DT_EVENT_TYPES if t in forwarded]
    return _event_types(text)


def _chosen_secret(args: Any, environ: Mapping[str, str], *, generate: bool) -> tuple[str | None, bool]:
    """The secret to give DT: ``--secret``, the environment's, or a generated one (True)."""
    if args.secret or args.secret_from_env:
        secret = args.secret or _first_secret(environ)
        if not secret:
            raise ConfigError("--secret-from-env: DT_SIGNATURE_SECRET is not set")
        if len(secret) < MIN_SECRET_CHARS:  # the receiver would refuse it at start
            raise ConfigError(f"the signature secret needs at least {MIN_SECRET_CHARS} characters")
        return secret, False
    if generate:
        return secrets.token_urlsafe(32), True
    return None, False


def _show_secret_once(secret: str, app: str, *, previous: str | None) -> None:
    value = f"{secret},{previous}" if previous else secret
    print("  signature secret (shown once; DT will sign every push with it):")
    print(f"    heroku config:set DT_SIGNATURE_SECRET={value} -a {app}")
    if previous:
        print("    (the old secret stays valid until you drop it from DT_SIGNATURE_SECRET)")


def _require_https(url: str) -> None:
    if not url.startswith("https://"):
        raise ConfigError(f"DT pushes over HTTPS only; {url!r} is not an https URL")


def _describe(changes: Mapping[str, Any]) -> list[str]:
    described = []
    for key, value in changes.items():
        if key == "httpConfig":
            described += [f"httpConfig.{k}" + (f"={v}" if k == "url" else "") for k, v in value.items()]
        else:
            described.append(f"{key}={value}")
    return described


def redacted(connector: Mapping[str, Any]) -> dict[str, Any]:
    """``connector`` with its signature secret and custom header values hidden. Pure."""
    shown = json.loads(json.dumps(connector))
    http = shown.get("httpConfig") or {}
    if http.get("signatureSecret"):
        http["signatureSecret"] = "<set>"
    if isinstance(http.get("headers"), dict):
        http["headers"] = {k: "<set>" for k in http["headers"]}
    return dict(shown)


# ---- backfill -------------------------------------------------------------------------------


def run_backfill(args: Any, environ: Mapping[str, str], api: DtApi | None = None) -> int:
    settings = Settings.from_env(tool_environ(environ))
    api = api or DtApi(DtApiSettings.from_env(environ))
    try:
        begin, end = window(since=args.since, start=args.start, end=args.end, now=datetime.now(UTC))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    redis = connect_to(settings)
    enqueuer = Enqueuer.from_settings(settings, redis)
    spec = f"since={args.since}" if args.since else f"from={args.start}|to={args.end or ''}"
    keys, keys_from = pushed_label_keys_of(api, environ)
    run = Backfill(
        api, enqueuer, redis, begin=begin, end=end, device_id=args.device, spec=spec, label_keys=keys, clock=time.time
    )
    print(f"backfill: {begin:%Y-%m-%d %H:%M}Z to {end:%Y-%m-%d %H:%M}Z → {', '.join(settings.destinations)}")
    print(f"backfill: labels {', '.join(keys) or '(none)'} ({keys_from}), as live pushes carry them")
    try:
        report = run.run()
    except DtApiError as exc:
        print(f"\nbackfill: stopped: {exc}. Run the same command again to resume.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbackfill: interrupted. Run the same command again to resume.", file=sys.stderr)
        return 130
    print(
        f"\nbackfill: done{' (resumed)' if report.resumed else ''}: {report.devices} devices, {report.pages} pages, "
        f"{report.events} events: {report.queued} queued, {report.duplicates} already received, "
        f"{report.skipped} unreadable"
    )
    return 0
