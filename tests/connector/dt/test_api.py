"""DT REST API client and ``dt-connector connector …`` against the DT stand-in."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import jwt
import pytest

from connector.cli.commands import redacted, run_connector
from connector.core.errors import ConfigError
from connector.core.settings import DtApiSettings
from connector.dt.api import DtApi, DtApiError, service_account_assertion
from tests.support.dt_standin import EMAIL, KEY_ID, SECRET, DtStandIn


@pytest.fixture
def dt() -> Iterator[DtStandIn]:
    server = DtStandIn()
    yield server
    server.close()


def api_for(dt: DtStandIn, **extra: str) -> DtApi:
    return DtApi(DtApiSettings.from_env(dt.env(**extra)), sleep=lambda s: None)


def connector_args(action: str, **options: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "action": action,
        "connector": None,
        "app": "my-app",
        "url": None,
        "name": "dt-connector",
        "secret": None,
        "secret_from_env": False,
        "events": None,
        "labels": "",
        "status": None,
        "rotate_secret": False,
    }
    defaults.update(options)
    return argparse.Namespace(**defaults)


def test_assertion_is_what_dt_expects():
    token = service_account_assertion(key_id="k1", email="a@b", secret="s" * 32, audience="https://id/token", now=1000)
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    claims = jwt.decode(
        token, "s" * 32, algorithms=["HS256"], audience="https://id/token", options={"verify_exp": False}
    )
    assert (claims["iss"], claims["iat"], claims["exp"]) == ("a@b", 1000, 4600)


def test_missing_service_account_names_the_variables():
    with pytest.raises(ConfigError, match="DT_SERVICE_ACCOUNT_SECRET, DT_SERVICE_ACCOUNT_EMAIL"):
        DtApiSettings.from_env({"DT_SERVICE_ACCOUNT_KEY_ID": "k", "DT_PROJECT_ID": "p"})


def test_settings_repr_hides_the_secret(dt: DtStandIn):
    settings = DtApiSettings.from_env(dt.env())
    assert SECRET not in repr(settings) and KEY_ID in repr(settings)


def test_token_is_reused_and_renewed_once_on_401(dt: DtStandIn):
    api = api_for(dt)
    api.create_connector({"displayName": "x"})
    api.get_connector("dc001")
    assert dt.state.tokens_issued == 1
    dt.state.valid_tokens.clear()  # revoked server-side
    assert api.get_connector("dc001")["displayName"] == "x"
    assert dt.state.tokens_issued == 2


def test_wrong_secret_is_a_clear_error_without_the_secret(dt: DtStandIn):
    api = api_for(dt, DT_SERVICE_ACCOUNT_SECRET="wrong-secret-value-0123456789abcdef")
    with pytest.raises(DtApiError) as info:
        api.get_connector("dc001")
    assert "DT_SERVICE_ACCOUNT_SECRET" in str(info.value) and "wrong-secret-value-0123456789abcdef" not in str(
        info.value
    )


def test_unknown_connector_is_an_error_with_the_status(dt: DtStandIn):
    with pytest.raises(DtApiError) as info:
        api_for(dt).get_connector("nope")
    assert info.value.status == 404


def test_create_sets_url_generated_secret_labels_and_shows_it_once(dt: DtStandIn, capsys):
    api = api_for(dt)
    status = run_connector(connector_args("create", url="https://my-app.herokuapp.com/dt/events"), {}, api)
    assert status == 0
    [resource] = dt.state.connectors.values()
    assert resource["type"] == "HTTP_PUSH" and resource["status"] == "ACTIVE"
    assert resource["httpConfig"]["url"] == "https://my-app.herokuapp.com/dt/events"
    assert resource["events"] == []  # all event types
    assert resource["labels"][0] == "name" and "moost_building" in resource["labels"]
    secret = resource["httpConfig"]["signatureSecret"]
    assert len(secret) >= 32
    out = capsys.readouterr().out
    assert out.count(secret) == 1
    assert f"heroku config:set DT_SIGNATURE_SECRET={secret} -a my-app" in out
    assert "DT_CONNECTOR_ID=dc001" in out


def test_create_refuses_plain_http(dt: DtStandIn):
    with pytest.raises(ConfigError, match="HTTPS"):
        run_connector(connector_args("create", url="http://example.com/dt/events"), {}, api_for(dt))


def test_create_with_mapped_events_and_the_env_secret(dt: DtStandIn, capsys):
    args = connector_args("create", url="https://x.example/dt/events", events="mapped", secret_from_env=True)
    env_secret = "from-env-secret-0123456789abcdef-test"
    run_connector(args, {"DT_SIGNATURE_SECRET": f"{env_secret},older"}, api_for(dt))
    [resource] = dt.state.connectors.values()
    assert resource["httpConfig"]["signatureSecret"] == env_secret
    assert "temperature" in resource["events"] and "networkStatus" not in resource["events"]
    assert env_secret not in capsys.readouterr().out  # not generated: not shown


def test_a_secret_too_short_for_the_receiver_is_not_given_to_dt(dt: DtStandIn):
    args = connector_args("create", url="https://x.example/dt/events", secret="short-secret")
    with pytest.raises(ConfigError, match="32 characters"):
        run_connector(args, {}, api_for(dt))
    assert dt.state.connectors == {}


def test_update_sends_an_update_mask_and_rotation_keeps_the_old_secret(dt: DtStandIn, capsys):
    api = api_for(dt)
    api.create_connector({"displayName": "x", "httpConfig": {"url": "https://old/dt/events", "signatureSecret": "s1"}})
    args = connector_args("update", connector="dc001", url="https://new.example/dt/events", rotate_secret=True)
    assert run_connector(args, {"DT_SIGNATURE_SECRET": "s1"}, api) == 0
    [(connector_id, changes)] = dt.state.patches
    http = dt.state.connectors["dc001"]["httpConfig"]
    assert connector_id == "dc001" and http["url"] == "https://new.example/dt/events"
    assert http["signatureSecret"] not in ("s1", "") and set(changes) == {"httpConfig"}
    assert f"DT_SIGNATURE_SECRET={http['signatureSecret']},s1 -a my-app" in capsys.readouterr().out


def test_show_hides_the_secret_and_metrics_are_summarised(dt: DtStandIn, capsys):
    api = api_for(dt, DT_CONNECTOR_ID="dc001")
    api.create_connector(
        {"displayName": "x", "httpConfig": {"url": "https://h/dt/events", "signatureSecret": "s3cr3t"}}
    )
    run_connector(connector_args("show"), {}, api)
    run_connector(connector_args("metrics"), {}, api)
    out = capsys.readouterr().out
    assert "s3cr3t" not in out and '"signatureSecret": "<set>"' in out
    assert "9 delivered, 1 failed, p99 latency 0.411s" in out


def test_redacted_hides_custom_header_values():
    shown = redacted({"httpConfig": {"url": "u", "headers": {"x-key": "abc"}}})
    assert shown["httpConfig"]["headers"] == {"x-key": "<set>"}


def test_service_account_email_is_the_issuer(dt: DtStandIn):
    api_for(dt).create_connector({"displayName": "y"})
    assert dt.state.tokens_issued == 1 and EMAIL.endswith("d21s.com")



def test_429_waits_for_retry_after_in_seconds_or_as_a_date_capped_at_a_minute(dt: DtStandIn):
    import email.utils
    import time

    waits: list[float] = []
    api = DtApi(DtApiSettings.from_env(dt.env()), sleep=waits.append)
    dt.state.throttle = ["7", email.utils.formatdate(time.time() + 30, usegmt=True)]
    api.create_connector({"displayName": "x"})
    assert waits[0] == 7.0 and 28 <= waits[1] <= 31
    dt.state.throttle = ["3600"]
    api.get_connector("dc001")
    assert waits[2] == 60.0


def recording_api(dt: DtStandIn) -> tuple[DtApi, list[float]]:
    waits: list[float] = []
    return DtApi(DtApiSettings.from_env(dt.env()), sleep=waits.append), waits


def test_5xx_are_retried_with_dt_clients_squared_backoff_and_504_waits_nine_seconds_more(dt: DtStandIn):
    api, waits = recording_api(dt)
    dt.state.failures = [503, 504]
    created = api.create_connector({"displayName": "x"})  # a POST is retried too, as DT's client does
    assert created["displayName"] == "x"
    assert waits == [1.0, 4.0 + 9.0]
    assert dt.state.api_calls == 3


def test_a_third_failure_is_an_error_naming_the_status_and_nothing_more_is_tried(dt: DtStandIn):
    api, waits = recording_api(dt)
    dt.state.failures = [500, 500, 500, 500]
    with pytest.raises(DtApiError) as caught:
        api.get_connector("dc001")
    assert caught.value.status == 500 and "HTTP 500" in str(caught.value)
    assert dt.state.api_calls == 3 and waits == [1.0, 4.0]
    assert dt.state.failures == [500]


def test_other_client_errors_are_not_retried(dt: DtStandIn):
    api, waits = recording_api(dt)
    dt.state.failures = [400]
    with pytest.raises(DtApiError) as caught:
        api.get_connector("dc001")
    assert caught.value.status == 400 and waits == [] and dt.state.api_calls == 1


def test_an_unreadable_retry_after_falls_back_to_the_backoff(dt: DtStandIn):
    api, waits = recording_api(dt)
    dt.state.throttle = ["soon"]
    api.create_connector({"displayName": "x"})
    assert waits == [1.0]


def test_an_unreachable_api_is_tried_three_times_then_reported_without_secrets(dt: DtStandIn):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v2"
    settings = DtApiSettings.from_env(dt.env(DT_API_URL=dead))
    waits: list[float] = []
    api = DtApi(settings, sleep=waits.append)
    with pytest.raises(DtApiError) as caught:
        api.get_connector("dc001")
    assert "unreachable" in str(caught.value) and SECRET not in str(caught.value)
    assert waits == [1.0, 4.0]
