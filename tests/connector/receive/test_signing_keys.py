"""DT-Asymmetric-Signature end to end: a local OpenID discovery + JWKS server and the app."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from redis import Redis

from connector import create_app
from connector.receive.signature import KeysUnavailable
from connector.receive.signing_keys import JwksKeyStore
from tests.support.helpers import dt_body, make_settings, queued_ids

ORG = "org-c0md3mm0c7pet3cfe9f0"


class IdentityServer:
    """Stands in for DT's identity service: discovery document and key set on 127.0.0.1."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # kid -> private key
        self.requests: list[str] = []
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if server.down:
                    self.send_error(503)
                    return
                if self.path == "/data-connector/.well-known/openid-configuration":
                    doc = {
                        "issuer": server.issuer,
                        "jwks_uri": f"{server.base}/data-connector/keys",
                        "id_token_signing_alg_values_supported": ["ES256"],
                    }
                elif self.path == "/data-connector/keys":
                    doc = {"keys": [server.jwk(kid, key) for kid, key in server.keys.items()]}
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.issuer = f"{self.base}/data-connector"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def jwk(kid: str, key: Any) -> dict[str, Any]:
        doc = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        return {**doc, "kid": kid, "use": "sig", "alg": "ES256"}

    def add_key(self, kid: str) -> Any:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[kid]

    def sign(self, body: bytes, kid: str, *, sub: str = ORG, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "checksum_sha256": hashlib.sha256(body).hexdigest(),
            "iat": issued,
            "exp": issued + 300,
            "iss": self.issuer,
            "sub": sub,
        }
        return jwt.encode(claims, self.keys[kid], algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def identity() -> Iterator[IdentityServer]:
    server = IdentityServer()
    server.add_key("key-1")
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


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
