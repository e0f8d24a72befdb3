"""A stand-in for DT's identity service and REST API v2, on 127.0.0.1 (real HTTP).

It follows the documented contract (../shared/reference/dt-protocol.md §4, §6, §7):

* ``POST /oauth2/token``: form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and ``assertion`` — an HS256 JWT with ``kid`` = key id, ``iss`` = the account's email,
  ``aud`` = the token URL, ``exp - iat <= 3600``; 400 otherwise;
* ``/v2/projects/{p}/dataconnectors`` (create, get, PATCH with ``update_mask``,
  ``:metrics``), every call needing ``Authorization: Bearer <token>``;
* ``/v2/projects/{p}/devices`` and ``/v2/projects/{p}/devices/{d}/events``, paginated
  with ``pageSize``/``pageToken``, history newest first within ``startTime``/``endTime``.

``fail_history_after`` makes every history request after that many answer 500, to
interrupt a backfill.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import jwt

KEY_ID = "sa-key-1"
SECRET = "sa-secret-do-not-log-3f9a-0123456789abcdef"
EMAIL = "backfill@project.serviceaccount.d21s.com"
PROJECT = "c0md3mm0c7pet3cfe9f0"
MAX_PAGE = 50


@dataclass
class DtState:
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # newest first
    tokens_issued: int = 0
    history_requests: int = 0
    fail_history_after: int | None = None
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    throttle: list[str] = field(default_factory=list)
    """``Retry-After`` values: each API call answers 429 with the next one until none are left."""
    failures: list[int] = field(default_factory=list)
    """Statuses (e.g. 503): each API call answers the next one until none are left."""
    api_calls: int = 0


class DtStandIn:
    def __init__(self) -> None:
        self.state = DtState()
        self._lock = threading.Lock()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def do_PATCH(self) -> None:
                standin._handle(self, "PATCH")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = f"{self.url}/v2"
        self.token_url = f"{self.url}/oauth2/token"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment variables that point dt-connector at this stand-in."""
        return {
            "DT_SERVICE_ACCOUNT_KEY_ID": KEY_ID,
            "DT_SERVICE_ACCOUNT_SECRET": SECRET,
            "DT_SERVICE_ACCOUNT_EMAIL": EMAIL,
            "DT_PROJECT_ID": PROJECT,
            "DT_API_URL": self.api_url,
            "DT_TOKEN_URL": self.token_url,
            **extra,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- dispatch ------------------------------------------------------------------

    def _handle(self, request: http.server.BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(request.path)
        query = urllib.parse.parse_qs(parsed.query)
        extra: dict[str, str] = {}
        with self._lock:
            if parsed.path != "/oauth2/token":
                self.state.api_calls += 1
            if parsed.path == "/oauth2/token" and method == "POST":
                status, body = self._token(raw)
            elif self.state.failures:
                status, body = self.state.failures.pop(0), {"error": "unavailable"}
            elif self.state.throttle:
                status, body = 429, {"error": "rate limited"}
                extra["Retry-After"] = self.state.throttle.pop(0)
            else:
                auth = request.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in self.state.valid_tokens:
                    status, body = 401, {"error": "unauthenticated"}
                else:
                    status, body = self._api(method, parsed.path, query, raw)
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _token(self, raw: bytes) -> tuple[int, Any]:
        form = urllib.parse.parse_qs(raw.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or "assertion" not in form:
            return 400, {"error": "invalid_request"}
        assertion = form["assertion"][0]
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                SECRET,
                algorithms=["HS256"],
                audience=self.token_url,
                issuer=EMAIL,
                options={"require": ["iat", "exp", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        if header.get("kid") != KEY_ID or claims["exp"] - claims["iat"] > 3600:
            return 400, {"error": "invalid_grant"}
        self.state.tokens_issued += 1
        token = f"dt-access-{self.state.tokens_issued}"
        self.state.valid_tokens.add(token)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 3600}

    def _api(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> tuple[int, Any]:
        prefix = f"/v2/projects/{PROJECT}"
        if not path.startswith(prefix):
            return 404, {"error": "project not found"}
        rest = path[len(prefix) :]
        if rest == "/dataconnectors" and method == "POST":
            body = json.loads(raw)
            connector_id = f"dc{len(self.state.connectors) + 1:03d}"
            resource = {"name": f"projects/{PROJECT}/dataconnectors/{connector_id}", **body}
            self.state.connectors[connector_id] = resource
            return 200, resource
        if rest.startswith("/dataconnectors/"):
            connector_id, _, verb = rest[len("/dataconnectors/") :].partition(":")
            resource = self.state.connectors.get(connector_id)
            if resource is None:
                return 404, {"error": "data connector not found"}
            if verb == "metrics":
                return 200, {"metrics": {"successCount": 9, "errorCount": 1, "latency99p": "0.411s"}}
            if method == "PATCH":
                changes = json.loads(raw)
                self.state.patches.append((connector_id, changes))
                for field_path in query.get("update_mask", [""])[0].split(","):
                    head, _, inner = field_path.partition(".")
                    if inner:
                        resource.setdefault(head, {})[inner] = changes[head][inner]
                    elif head:
                        resource[head] = changes[head]
            return 200, resource
        if rest == "/devices":
            return 200, self._page(self.state.devices, query, "devices")
        if rest.startswith("/devices/") and rest.endswith("/events"):
            self.state.history_requests += 1
            limit = self.state.fail_history_after
            if limit is not None and self.state.history_requests > limit:
                return 500, {"error": "internal"}
            device_id = rest[len("/devices/") : -len("/events")]
            start, end = query.get("startTime", [""])[0], query.get("endTime", [""])[0]
            events = [e for e in self.state.history.get(device_id, []) if start <= e["timestamp"] < end]
            return 200, self._page(events, query, "events")
        return 404, {"error": "not found"}

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
        size = min(int(query.get("pageSize", [str(MAX_PAGE)])[0]), MAX_PAGE)
        offset = int(query.get("pageToken", ["0"])[0] or 0)
        chunk = items[offset : offset + size]
        following = offset + size
        return {key: chunk, "nextPageToken": str(following) if following < len(items) else ""}
