"""Tests for connector.core.settings.Settings.from_env."""

from __future__ import annotations

from dataclasses import fields

import pytest

from connector.core.errors import ConfigError
from connector.core.settings import (
    DT_PRODUCTION_DISCOVERY_URL,
    VARIABLE,
    VARIABLES,
    DtApiSettings,
    PlatformSettings,
    Settings,
    Variable,
    default_of,
)

BASE = {"REDIS_URL": "redis://localhost:6379/0", "DT_SIGNATURE_SECRET": "s3cr3t-value-for-test-0123456789abcdef"}


def test_minimal_environment():
    settings = Settings.from_env(BASE)
    assert settings.signature_secrets == ("s3cr3t-value-for-test-0123456789abcdef",)
    assert settings.dedupe_ttl_s == 24 * 3600
    assert settings.asymmetric is False
    assert settings.destinations == ("log",)


def test_access_log_flush_interval():
    assert Settings.from_env(BASE).access_log_flush_ms == 100
    assert Settings.from_env({**BASE, "ACCESS_LOG_FLUSH_MS": "0"}).access_log_flush_ms == 0


def test_rotation_list():
    rotating = "new-secret-aaaa-0123456789abcdef-x, old-secret-bbbb-0123456789abcdef-y"
    settings = Settings.from_env({**BASE, "DT_SIGNATURE_SECRET": rotating})
    assert settings.signature_secrets == ("new-secret-aaaa-0123456789abcdef-x", "old-secret-bbbb-0123456789abcdef-y")


def test_secrets_never_in_repr_or_summary():
    settings = Settings.from_env({**BASE, "REDIS_URL": "rediss://:p4ssw0rd@host:6380"})
    for text in (repr(settings), str(settings), settings.verification_summary):
        assert "s3cr3t-value-for-test-0123456789abcdef" not in text
        assert "p4ssw0rd" not in text


def test_refuses_to_start_without_verification():
    with pytest.raises(ConfigError, match="DT_SIGNATURE_SECRET"):
        Settings.from_env({"REDIS_URL": "redis://localhost"})


def test_org_id_turns_on_asymmetric_verification():
    settings = Settings.from_env({"REDIS_URL": "redis://x", "DT_ORG_ID": "org-1"})
    assert settings.asymmetric and settings.org_id == "org-1"
    assert settings.oidc_discovery_url == DT_PRODUCTION_DISCOVERY_URL
    assert "org org-1" in settings.verification_summary


def test_insecure_opt_out_is_explicit_and_says_so():
    settings = Settings.from_env({"REDIS_URL": "redis://x", "DT_INSECURE_SKIP_VERIFY": "1"})
    assert "NOTHING" in settings.verification_summary


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"DT_SIGNATURE_SECRET": "a,,b"}, "DT_SIGNATURE_SECRET"),
        ({"DEDUPE_TTL_S": "soon"}, "DEDUPE_TTL_S"),
        ({"DEDUPE_TTL_S": "5"}, "DEDUPE_TTL_S"),
        ({"MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES"),
        ({"DT_SIGNATURE_LEEWAY_S": "1.5"}, "DT_SIGNATURE_LEEWAY_S"),
        ({"DT_ASYMMETRIC_SIGNATURE": "maybe"}, "DT_ASYMMETRIC_SIGNATURE"),
        ({"REDIS_TIMEOUT_S": "60"}, "REDIS_TIMEOUT_S"),
        ({"CONNECTOR_QUEUE": "a:b"}, "CONNECTOR_QUEUE"),
        ({"CONNECTOR_DESTINATIONS": "log,pigeon"}, "CONNECTOR_DESTINATIONS"),
        ({"ACCESS_LOG_FLUSH_MS": "-5"}, "ACCESS_LOG_FLUSH_MS"),
        ({"RQ_KEY_PREFIX": "not-what-rq-read"}, "RQ_KEY_PREFIX"),  # RQ reads it from the process's environment
    ],
)
def test_errors_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({**BASE, **env})


def test_redis_url_required():
    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_env({"DT_SIGNATURE_SECRET": "x"})


@pytest.mark.parametrize("variable", [v for v in VARIABLES if v.shown is None and v.default_text], ids=lambda v: v.name)
def test_each_declared_default_is_what_its_reader_reads_from_its_written_form(variable: Variable):
    """The docs and app.json show ``default_text``; setting a variable to it changes nothing."""
    assert variable.read({variable.name: variable.default_text}, variable) == variable.default
    assert variable.read({}, variable) == variable.default
    if variable.bounds is not None:
        assert variable.bounds[0] <= variable.default <= variable.bounds[1]


def test_every_field_of_the_settings_classes_is_a_declared_variable():
    for cls in (Settings, PlatformSettings, DtApiSettings):
        assert [f.name for f in fields(cls)] and all("variable" in f.metadata for f in fields(cls))
    assert len(VARIABLE) == len(VARIABLES)  # no name declared twice
    assert default_of("RETRY_SCHEDULE_S") == Settings.from_env(BASE).retry_schedule_s


def test_platform_settings_name_the_variable_at_fault():
    assert PlatformSettings.from_env({}).port == 5000
    assert PlatformSettings.from_env({"PORT": "8080", "WEB_CONCURRENCY": "3"}).web_concurrency == 3
    with pytest.raises(ConfigError, match="PORT"):
        PlatformSettings.from_env({"PORT": "eighty"})
