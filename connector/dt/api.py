"""A small client for DT's REST API v2: data connectors, devices, event history (I/O edge).

Authentication is a service account's OAuth2 JWT-bearer grant (RFC 7523): an HS256
assertion signed with the account's secret (``service_account_assertion``, pure) is
exchanged at the token endpoint for a one-hour access token, renewed a minute early
and once on a 401. Like DT's own client: 500/503/504 are retried with an n² s backoff,
429 after its ``Retry-After``, everything else fails at once with ``DtApiError``.
Neither the secret nor a token ever appears in an error message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jwt
import requests

from connector.retry_after import parse_retry_after
from connector.settings import DtApiSettings

ASSERTION_LIFETIME_S = 3600
"""DT accepts assertions living at most one hour."""

TOKEN_RENEWAL_MARGIN_S = 60
ATTEMPTS = 3
RETRIED_STATUSES = (500, 503, 504)
MAX_RETRY_AFTER_S = 60.0
"""A command line waits at most this long on a 429's ``Retry-After`` before asking again."""
PAGE_SIZE_DEVICES = 100
PAGE_SIZE_EVENTS = 1000


class DtApiError(Exception):
    """A DT REST API call failed; ``status`` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def service_account_assertion(*, key_id: str, email: str, secret: str, audience: str, now: float) -> str:
    """The signed JWT a service account exchanges for an access token. Pure."""
    issued = int(now)
    claims = {"iat": issued, "exp": issued + ASSERTION_LIFETIME_S, "aud": audience, "iss": email}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id, "typ": "JWT"})


class DtApi:
    """DT REST API calls for one project."""

    def __init__(
        self,
        settings: DtApiSettings,
        *,
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._token: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"DtApi(project={self.settings.project_id!r}, api={self.settings.api_url!r})"

    # ---- data connectors -------------------------------------------------------------

    def connector_path(self, connector_id: str) -> str:
        return f"/projects/{self.settings.project_id}/dataconnectors/{connector_id}"

    def get_connector(self, connector_id: str) -> dict[str, Any]:
        return dict(self.request("GET", self.connector_path(connector_id)))

    def create_connector(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", f"/projects/{self.settings.project_id}/dataconnectors", json=body))

    def update_connector(self, connector_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH only ``changes``, naming them in ``update_mask`` (nested as ``httpConfig.url``)."""
        mask: list[str] = []
        for key, value in changes.items():
            if isinstance(value, Mapping) and key == "httpConfig":
                mask.extend(f"httpConfig.{inner}" for inner in value)
            else:
                mask.append(key)
        params = {"update_mask": ",".join(mask)}
        return dict(self.request("PATCH", self.connector_path(connector_id), params=params, json=changes))

    def connector_metrics(self, connector_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{self.connector_path(connector_id)}:metrics"))

    # ---- devices and history ---------------------------------------------------------

    def devices(self) -> Iterator[dict[str, Any]]:
        """Every device of the project (all pages)."""
        token = ""
        while True:
            params: dict[str, Any] = {"pageSize": PAGE_SIZE_DEVICES}
            if token:
                params["pageToken"] = token
            page = self.request("GET", f"/projects/{self.settings.project_id}/devices", params=params)
            yield from page.get("devices", [])
            token = page.get("nextPageToken") or ""
            if not token:
                return

    def event_page(
        self, device_id: str, *, start: str, end: str, page_token: str = "", event_types: tuple[str, ...] = ()
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of a device's event history (newest first) and the next page's token ("" at the end)."""
        params: dict[str, Any] = {"startTime": start, "endTime": end, "pageSize": PAGE_SIZE_EVENTS}
        if page_token:
            params["pageToken"] = page_token
        if event_types:
            params["eventTypes"] = list(event_types)
        page = self.request("GET", f"/projects/{self.settings.project_id}/devices/{device_id}/events", params=params)
        return list(page.get("events", [])), str(page.get("nextPageToken") or "")

    # ---- transport -------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> dict[str, Any]:
        """Call ``path`` under the API base with retries; the decoded JSON answer.

        Raises:
            DtApiError: the call failed for good.
        """
        url = self.settings.api_url + path
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            try:
                response = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self._timeout_s
                )
            except requests.RequestException as exc:
                if attempt < ATTEMPTS:
                    self._sleep(attempt**2)
                    continue
                raise DtApiError(f"{method} {path}: {type(exc).__name__} (DT API unreachable)") from None
            status = response.status_code
            if status == 401 and not renewed:
                self._token = None
                renewed = True
                continue
            if status == 429 and attempt < ATTEMPTS:
                wait = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
                self._sleep(min(MAX_RETRY_AFTER_S, wait) if wait is not None else attempt**2)
                continue
            if status in RETRIED_STATUSES and attempt < ATTEMPTS:
                self._sleep(attempt**2 + (9 if status == 504 else 0))
                continue
            if not 200 <= status < 300:
                raise DtApiError(f"{method} {path}: HTTP {status}: {_error_text(response)}", status)
            if not response.content:
                return {}
            try:
                doc = response.json()
            except ValueError:
                raise DtApiError(f"{method} {path}: answer is not JSON", status) from None
            return doc if isinstance(doc, dict) else {"items": doc}

    def _access_token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        s = self.settings
        assertion = service_account_assertion(
            key_id=s.key_id, email=s.email, secret=s.secret, audience=s.token_url, now=now
        )
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        try:
            response = self._session.post(s.token_url, data=form, timeout=self._timeout_s)
        except requests.RequestException as exc:
            raise DtApiError(f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise DtApiError(
                f"token endpoint refused the service account (HTTP {response.status_code}); check "
                "DT_SERVICE_ACCOUNT_KEY_ID, DT_SERVICE_ACCOUNT_SECRET and DT_SERVICE_ACCOUNT_EMAIL",
                response.status_code,
            )
        try:
            doc = response.json()
            token = str(doc["access_token"])
            lifetime = float(doc.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise DtApiError("token endpoint answer has no access_token") from None
        self._token = (token, now + max(1.0, lifetime - TOKEN_RENEWAL_MARGIN_S))
        return token


def _error_text(response: requests.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or doc)[:200]
    return str(doc)[:200]
