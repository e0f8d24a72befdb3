"""The ``dt-connector`` command.

* ``dt-connector dev``: the whole stack in the foreground — Redis (``REDIS_URL`` or an
  embedded server), the web app under gunicorn and a worker — until Ctrl-C.
* ``dt-connector web``: the web process (Procfile ``web:``): checks the configuration, then gunicorn.
* ``dt-connector worker``: the worker process (Procfile ``worker:``).
* ``dt-connector check-config``: validate the environment and print a secret-free summary.
* ``dt-connector failed list|show|replay``: dead-lettered deliveries.
* ``dt-connector send-test-event``: act as DT against a receiver.
* ``dt-connector connector create|update|show|metrics``: the DT Data Connector.
* ``dt-connector backfill``: queue missed events from DT's event history.
* ``dt-connector setup spot|moost``: provision Spot AI's event types, MOOST's buildings and devices.
* ``dt-connector doctor``: check a deployment live, one verdict per piece.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import click
import requests

from connector.cli.commands import backfill, connector, send_test_event
from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.cli.dev.ngrok import DEFAULT_API_URL, NgrokError, find_binary, start_agent, wait_for_url
from connector.cli.dev.secret import ensure_dev_secret
from connector.cli.doctor import doctor
from connector.cli.environment import STATE_DIR
from connector.cli.failed import failed
from connector.cli.setup import setup
from connector.core.errors import ConfigError
from connector.core.settings import DtApiSettings, PlatformSettings, Settings
from connector.dt.api import DtApi, DtApiError
from workers.run.dyno import WORK_CONNECTIONS, redis_connections_per_dyno, run_worker
from workers.translate.mapping import EventMapping, checked_mapping

GUNICORN_CONFIG = "python:connector.web.gunicorn_config"
"""The web process's gunicorn settings."""



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dt-connector", prog_name="dt-connector")
def cli() -> None:
    """dt-connector: receive Disruptive Technologies Data Connector pushes, queue them durably
    in Redis and forward them to MOOST and Spot AI."""


@cli.command()
@click.option("--port", type=int, default=lambda: PlatformSettings.from_env().port, show_default="$PORT or 5000")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to bind")
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
@click.option("--ngrok", is_flag=True, help="expose the receiver through an ngrok https tunnel")
def dev(port: int, host: str, state_dir: Path, ngrok: bool) -> int:
    """Run Redis, web and worker locally until Ctrl-C."""
    return run_dev(port=port, host=host, state_dir=state_dir, ngrok=ngrok)


@cli.command()
@click.option("--bind", help="address to listen on (default: all interfaces, port $PORT or 5000)")
def web(bind: str | None) -> int:
    """Check the configuration, then serve pushes with gunicorn (Procfile web:)."""
    checked_settings(os.environ)
    command = web_command(bind)
    os.execv(command[0], command)  # noqa: S606  # gunicorn becomes this process: Heroku signals it directly
    return 1  # not reached


@cli.command()
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
def worker(burst: bool) -> int:
    """Run the worker processes (Procfile worker:)."""
    return run_worker(Settings.from_env(), burst=burst)  # checks the mapping before it starts


@cli.command("check-config")
def check_config_command() -> int:
    """Validate the configuration and the mapping (Procfile release:)."""
    return check_config()


cli.add_command(failed)
cli.add_command(send_test_event)
cli.add_command(connector)
cli.add_command(backfill)
cli.add_command(setup)
cli.add_command(doctor)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; its exit status (0 ok, 1 failed, 2 configuration or usage error)."""
    try:
        result = cli.main(args=argv, prog_name="dt-connector", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    except ConfigError as exc:
        print(f"dt-connector: configuration error: {exc}", file=sys.stderr)
        return 2
    except NgrokError as exc:
        print(f"dt-connector: ngrok: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


def checked_settings(environ: Mapping[str, str]) -> Settings:
    """The settings, once they and the mapping they name are valid (what web and worker start with).

    Raises:
        ConfigError: naming the variable or mapping key at fault (check-config's message).
    """
    return _checked(environ)[0]


def _checked(environ: Mapping[str, str]) -> tuple[Settings, EventMapping]:
    settings = Settings.from_env(environ)
    return settings, checked_mapping(settings.mapping_path)


def check_config() -> int:
    """Validate settings and the mapping (Procfile ``release:``); print a secret-free summary.

    Raises:
        ConfigError: naming the variable or mapping key at fault.
    """
    settings, mapping = _checked(os.environ)
    print(f"configuration OK: {settings!r}")
    print(f"verifying: {settings.verification_summary}")
    print(f"mapping: version {mapping.version}, {len(mapping.moost)} MOOST and {len(mapping.spot)} Spot AI rules")
    span_h = sum(settings.retry_schedule_s) / 3600
    print(f"delivery retries: {len(settings.retry_schedule_s)}, spanning {span_h:.1f} h")
    if span_h < 12:
        print("warning: RETRY_SCHEDULE_S gives up within DT's 12 h redelivery window", file=sys.stderr)
    on_heroku = bool(os.environ.get("DYNO"))
    if on_heroku and not settings.asymmetric and not settings.insecure_skip_verify:
        print(
            "warning: DT-Asymmetric-Signature is not checked; set DT_ORG_ID (your DT organisation id) so that "
            "a leaked signature secret alone cannot forge pushes",
            file=sys.stderr,
        )
    if on_heroku and not settings.metrics_token:
        print("warning: METRICS_TOKEN is not set, so /metrics and /status are off on this app", file=sys.stderr)
    web_processes = PlatformSettings.from_env().web_concurrency
    web, worker = web_processes * settings.web_redis_connections, redis_connections_per_dyno(settings)
    print(
        f"Redis connections at most: {web} per web dyno (WEB_CONCURRENCY {web_processes} x WEB_REDIS_CONNECTIONS "
        f"{settings.web_redis_connections}), "
        f"{worker} per worker dyno (WORKER_PROCESSES {settings.worker_processes} x (1 + {WORK_CONNECTIONS})); "
        f"{web + worker} for one of each (Heroku Key-Value Store mini allows 20)"
    )
    return 0


def run_dev(*, port: int, host: str, state_dir: Path, ngrok: bool = False) -> int:
    """Run the local stack in the foreground; returns the exit status."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WORKER_PROCESSES", "1")  # a laptop needs one process of a few job threads
    env.setdefault("WORKER_THREADS", "4")
    if ngrok:
        find_binary(env)  # before anything starts
    redis: EmbeddedRedis | None = None
    if not env.get("REDIS_URL"):
        # Announced in the state directory for setup, doctor, failed and backfill in another terminal.
        redis = EmbeddedRedis(persist_dir=state_dir / "redis", announce_dir=state_dir).start()
        env["REDIS_URL"] = redis.url
        print(f"dt-connector dev: embedded Redis on {redis.url} (data in {state_dir / 'redis'})")
    if not (env.get("DT_SIGNATURE_SECRET") or env.get("DT_ORG_ID") or env.get("DT_ASYMMETRIC_SIGNATURE")):
        secret_file = ensure_dev_secret(state_dir)
        env["DT_SIGNATURE_SECRET"] = secret_file.read_text().strip()
        print(f"dt-connector dev: no DT_SIGNATURE_SECRET set; using the development secret in {secret_file}")
    try:
        checked_settings(env)  # fail here, with the variable's name, not in a child
    except ConfigError:
        if redis:
            redis.stop()
        raise

    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        children.append(subprocess.Popen(web_command(f"{host}:{port}"), env=env, start_new_session=True))
        children.append(
            subprocess.Popen([sys.executable, "-m", "connector.cli", "worker"], env=env, start_new_session=True)
        )
        if _wait_ready(f"http://127.0.0.1:{port}/readyz", children, lambda: stopping):
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
            print(f"dt-connector dev: ready. Push DT events to http://{shown}:{port}/dt/events", flush=True)
            if ngrok:
                children.append(_start_tunnel(port, env))
            print("dt-connector dev: Ctrl-C stops everything.", flush=True)
        elif not stopping and all(child.poll() is None for child in children):
            print(f"dt-connector dev: the web process did not become ready on port {port}", file=sys.stderr)
            return 1
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("dt-connector dev: a process exited; stopping the stack", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_all(children)
        if redis:
            redis.stop()
        print("dt-connector dev: stopped.", flush=True)


def _start_tunnel(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ngrok, print the public push URL and, with DT credentials, point the connector at it."""
    agent = start_agent(port=port, env=env)
    try:
        public = wait_for_url(env.get("NGROK_API_URL", DEFAULT_API_URL), port=port, alive=lambda: agent.poll() is None)
    except NgrokError:
        _stop_all([agent])
        raise
    push_url = f"{public}/dt/events"
    print(f"dt-connector dev: public URL (register it as the Data Connector's URL): {push_url}", flush=True)
    if DtApiSettings.configured(env):
        api_settings = DtApiSettings.from_env(env)
        if not api_settings.connector_id:
            print("dt-connector dev: set DT_CONNECTOR_ID to have the Data Connector pointed here", flush=True)
        else:
            try:
                DtApi(api_settings).update_connector(api_settings.connector_id, {"httpConfig": {"url": push_url}})
                print(f"dt-connector dev: Data Connector {api_settings.connector_id} now pushes to {push_url}")
            except DtApiError as exc:
                print(f"dt-connector dev: could not update the Data Connector: {exc}", file=sys.stderr)
    return agent


def web_command(bind: str | None, app: str = "connector.web.app:create_app()") -> list[str]:
    """gunicorn as the web process runs it (same settings), bound to ``bind`` (None: ``$PORT``)."""
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, *(["--bind", bind] if bind else []), app]


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], stopping: object) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not stopping():  # type: ignore[operator]
        if any(child.poll() is not None for child in children):
            return False
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    sys.exit(main())
