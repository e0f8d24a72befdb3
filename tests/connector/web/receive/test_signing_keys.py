"""DT-Asymmetric-Signature end to end: a local OpenID discovery + JWKS server and the app."""

from __future__ import annotations

import pytest
from redis import Redis

from connector.web.app import create_app
from connector.web.receive.signature import KeysUnavailable
from connector.web.receive.signing_keys import JwksKeyStore
from tests.support.helpers import dt_body, make_settings, queued_ids
from tests.support.identity import ORG, IdentityServer


@pytest.fixture
def es_client(identity: IdentityServer, redis: Redis, redis_server):
    settings = make_settings(
        redis_server.url,
        signature_secrets=(),
        asymmetric=True,
        oidc_discovery_url=identity.discovery_url,
        org_id=ORG,
    )
    return create_app(settings, configure_logs=False).test_client()


def es_push(client, body: bytes, token: str):
    return client.post("/dt/events", data=body, headers={"DT-Asymmetric-Signature": token})


def test_asymmetric_push_accepted(es_client, identity: IdentityServer, redis: Redis):
    body = dt_body(event_id="es1")
    assert es_push(es_client, body, identity.sign(body, "key-1")).status_code == 200
    assert queued_ids(redis) == ["log-es1"]


def test_header_name_any_case(es_client, identity: IdentityServer):
    body = dt_body(event_id="es2")
    headers = {"dt-asymmetric-signature": identity.sign(body, "key-1")}
    response = es_client.post("/dt/events", data=body, headers=headers)
    assert response.status_code == 200


def test_other_organisation_rejected(es_client, identity: IdentityServer, redis: Redis):
    body = dt_body(event_id="es3")
    response = es_push(es_client, body, identity.sign(body, "key-1", sub="org-someone-else"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "org-mismatch"
    assert queued_ids(redis) == []


def test_keys_are_cached(es_client, identity: IdentityServer):
    for n in range(5):
        body = dt_body(event_id=f"cache{n}")
        assert es_push(es_client, body, identity.sign(body, "key-1")).status_code == 200
    assert identity.requests.count("/data-connector/keys") == 1


def test_rotated_key_fetched_once_on_unknown_kid(identity: IdentityServer):
    clock = [1000.0]
    store = JwksKeyStore(identity.discovery_url, min_refresh_s=30, clock=lambda: clock[0])
    assert store("key-1") is not None
    identity.add_key("key-2")
    clock[0] += 31
    assert store("key-2") is not None  # unknown kid → one refresh finds it
    fetches = identity.requests.count("/data-connector/keys")
    assert store("forged-kid") is None  # refresh throttled: no fetch within min_refresh_s
    assert store("forged-kid-2") is None
    assert identity.requests.count("/data-connector/keys") == fetches


def test_identity_service_down_is_503_not_401(es_client, identity: IdentityServer, redis: Redis):
    identity.down = True
    body = dt_body(event_id="es4")
    response = es_push(es_client, body, identity.sign(body, "key-1"))
    assert response.status_code == 503
    assert response.get_json()["error"] == "keys-unavailable"
    assert "Retry-After" in response.headers
    identity.down = False
    fetches = len(identity.requests)
    assert es_push(es_client, body, identity.sign(body, "key-1")).status_code == 503  # tried moments ago
    assert len(identity.requests) == fetches
    store = es_client.application.extensions["connector"].policy.es_key_for
    store.min_refresh_s = 0  # as if the limit's 30 s had passed
    assert es_push(es_client, body, identity.sign(body, "key-1")).status_code == 200
    assert queued_ids(redis) == ["log-es4"]


def test_cached_keys_survive_an_identity_outage(identity: IdentityServer):
    clock = [0.0]
    store = JwksKeyStore(identity.discovery_url, ttl_s=60, clock=lambda: clock[0])
    key = store("key-1")
    identity.down = True
    clock[0] += 120  # cache expired, refresh fails: keep serving the cached set
    assert store("key-1") is key


def test_no_keys_at_all_raises_keys_unavailable(identity: IdentityServer):
    identity.down = True
    with pytest.raises(KeysUnavailable):
        JwksKeyStore(identity.discovery_url)("key-1")


def test_discovery_naming_another_issuer_is_refused(identity: IdentityServer):
    store = JwksKeyStore(identity.discovery_url)
    store.issuer = "https://impostor.example/data-connector"
    with pytest.raises(KeysUnavailable):
        store("key-1")
