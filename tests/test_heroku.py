"""What Heroku reads: app.json (Heroku Button), Procfile (web, worker, release), buildpack files."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from connector.cli.settings_docs import app_json, configuration_markdown, main
from connector.core.settings import VARIABLE, DtApiSettings, PlatformSettings, Settings
from tests.support.helpers import ROOT

APP = json.loads((ROOT / "app.json").read_text())


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


class RecordingEnv(Mapping[str, str]):
    """An empty environment that records every variable the settings code asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.asked = values, set[str]()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def variables_read_by_the_service() -> set[str]:
    """Every variable Settings, PlatformSettings and DtApiSettings read, recorded while they read a full environment."""
    env = RecordingEnv(
        {
            "REDIS_URL": "redis://localhost/0",
            "DT_SIGNATURE_SECRET": "s" * 32,
            "DT_SERVICE_ACCOUNT_KEY_ID": "k",
            "DT_SERVICE_ACCOUNT_SECRET": "s",
            "DT_SERVICE_ACCOUNT_EMAIL": "e@example.com",
            "DT_PROJECT_ID": "p",
        }
    )
    Settings.from_env(env)
    PlatformSettings.from_env(env)
    DtApiSettings.from_env(env)
    return env.asked


def test_button_provisions_redis_web_and_worker_on_the_python_buildpack():
    assert {"url": "heroku/python"} in APP["buildpacks"]
    assert set(APP["formation"]) == {"web", "worker"}
    assert any(addon["plan"].startswith("heroku-redis:") for addon in APP["addons"])
    requirements = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirements == ["."]  # the package itself, dependencies from setup.cfg
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


def test_every_config_var_is_described():
    described = set(APP["env"])
    read = variables_read_by_the_service()
    assert len(read) > 30  # the recording saw them
    assert read <= set(VARIABLE)
    set_by_heroku = {name for name in read if VARIABLE[name].set_by}  # the add-on, the platform, the buildpack
    platform = {"REDIS_URL", "PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "HEROKU_APP_DEFAULT_DOMAIN_NAME"}
    assert set_by_heroku == platform
    assert read - set_by_heroku <= described
    assert all(entry.get("description") for entry in APP["env"].values())
    assert APP["env"]["DT_SIGNATURE_SECRET"]["generator"] == "secret"
    assert not any("value" in entry for name, entry in APP["env"].items() if "SECRET" in name or "KEY" in name)


def test_configuration_reference_and_app_json_are_generated_from_the_settings():
    assert (ROOT / "docs" / "configuration.md").read_text() == configuration_markdown()
    assert (ROOT / "app.json").read_text() == app_json(APP)
    assert main([]) == 0


def test_procfile_runs_web_worker_and_a_validating_release_phase():
    processes = procfile()
    assert processes["web"] == "dt-connector web"  # checks the configuration, then gunicorn
    assert processes["worker"] == "dt-connector worker"
    assert processes["release"] == "dt-connector check-config"


def release_env(**extra: str) -> dict[str, str]:
    """The environment Heroku gives the release phase of a fresh Button deploy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "MOOST_", "SPOT_", "CONNECTOR_"))}
    for name, entry in APP["env"].items():
        if entry.get("generator") == "secret":
            env[name] = secrets.token_hex(32)
        elif "value" in entry:
            env[name] = entry["value"]
    env["REDIS_URL"] = "rediss://:pw@redis.example:6380"  # the release phase must not need Redis
    env.update(extra)
    return env


def run_release(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = procfile()["release"].split()
    assert command[0] == "dt-connector"
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *command[1:]], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_release_phase_passes_on_a_fresh_button_deploy_and_prints_no_secret():
    env = release_env()
    result = run_release(env)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout and "mapping: version 1" in result.stdout
    assert env["DT_SIGNATURE_SECRET"] not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"DT_SIGNATURE_SECRET": ""}, "DT_SIGNATURE_SECRET"),
        ({"MOOST_CLIENT_ID": "c"}, "MOOST_CLIENT_SECRET"),
        ({"CONNECTOR_MAPPING": "/nonexistent/mapping.toml"}, "CONNECTOR_MAPPING"),
    ],
)
def test_release_phase_fails_a_bad_deploy_naming_the_variable(extra: dict[str, str], named: str):
    result = run_release(release_env(**extra))
    assert result.returncode == 2
    assert named in result.stderr


@pytest.mark.slow
def test_release_phase_warns_about_a_retry_schedule_shorter_than_dt_redelivers():
    result = run_release(release_env(RETRY_SCHEDULE_S="1,2,3"))
    assert result.returncode == 0
    assert "delivery retries: 3, spanning 0.0 h" in result.stdout
    assert "gives up within DT's 12 h" in result.stderr
