"""A stand-in for DT's identity service: OpenID discovery and an ES256 key set on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ORG = "org-c0md3mm0c7pet3cfe9f0"


class IdentityServer:
    """Stands in for DT's identity service: discovery document and key set on 127.0.0.1."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # kid -> private key
        self.requests: list[str] = []
        self.down = False
        self.delay_s = 0.0
        """Seconds every answer waits (a slow identity service)."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                time.sleep(server.delay_s)
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
