"""A small client for DT's REST API v2: data connectors, devices, event history (I/O edge).

Authentication is a service account's OAuth2 JWT-bearer grant (RFC 7523): an HS256
assertion signed with the account's secret (``service_account_assertion``, pure) is
exchanged at the token endpoint for a one-hour access token, renewed a minute early
and once on a 401. Retries are urllib3's ``Retry`` on the session's adapter, set to DT's
own client's terms (``DtRetry``): 429/500/503/504 and network errors are tried three times
in all, with an n² s backoff (a 504 adds 9 s) or a 429's ``Retry-After``; everything else
fails at once with ``DtApiError``.
Neither the secret nor a token ever appears in an error message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jwt
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connector.core.retry_after import parse_retry_after
from connector.core.settings import DtApiSettings

ASSERTION_LIFETIME_S = 3600
"""DT accepts assertions living at most one hour."""

TOKEN_RENEWAL_MARGIN_S = 60
ATTEMPTS = 3
RETRIED_STATUSES = (429, 500, 503, 504)
MAX_RETRY_AFTER_S = 60.0
"""A command line waits at most this long on a 429's ``Retry-After`` before asking again."""
PAGE_SIZE_DEVICES = 100
PAGE_SIZE_EVENTS = 1000


class DtApiError(Exception):
    """A DT REST API call failed; ``status`` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DtRetry(Retry):
    """urllib3's ``Retry`` waiting as DT's own client does.

    ``pause`` does the waiting (``time.sleep``; tests pass a recorder). Every method is
    retried, as DT's client does: its API answers 5xx before acting.
    """

    RETRY_AFTER_STATUS_CODES = frozenset([429])  # DT sends Retry-After with 429 only

    def __init__(self, *args: Any, pause: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause = pause

    @classmethod
    def for_dt(cls, pause: Callable[[float], None] = time.sleep) -> DtRetry:
        return cls(
            total=ATTEMPTS - 1,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=None,
            raise_on_status=False,  # the last answer reaches DtApi.request, which names its status
            respect_retry_after_header=True,
            pause=pause,
        )

    def new(self, **kwargs: Any) -> DtRetry:
        fresh = super().new(**kwargs)
        fresh.pause = self.pause
        return fresh

    def get_backoff_time(self) -> float:
        """n² s after the n-th failure in a row; 9 s more after a 504 (DT's gateway timed out)."""
        failures = len(self.history)
        after_504 = bool(self.history) and self.history[-1].status == 504
        return float(failures**2 + (9 if after_504 else 0))

    def get_retry_after(self, response: Any) -> float | None:
        """The answer's ``Retry-After`` in seconds, at most a minute; None when absent or unreadable
        (urllib3's own parser raises on a malformed value, which would escape ``requests``)."""
        wait = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
        return None if wait is None else min(wait, MAX_RETRY_AFTER_S)

    def sleep(self, response: Any = None) -> None:
        wait = None
        if response is not None and response.status in self.RETRY_AFTER_STATUS_CODES:
            wait = self.get_retry_after(response)
        self.pause(wait if wait is not None else self.get_backoff_time())


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
        self._session.mount(settings.api_url, HTTPAdapter(max_retries=DtRetry.for_dt(sleep)))
        self._timeout_s = timeout_s
        self._clock = clock
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
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            try:
                response = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self._timeout_s
                )
            except requests.RequestException as exc:
                raise DtApiError(f"{method} {path}: {type(exc).__name__} (DT API unreachable)") from None
            if response.status_code == 401 and not renewed:
                self._token = None  # expired or revoked early: one new token, one more try
                continue
            break
        status = response.status_code
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
