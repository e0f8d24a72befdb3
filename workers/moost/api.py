"""MOOST's token and its building and device-set API (I/O edge; shared/reference/downstream-apis.md §1.6).

``MoostTokens`` holds the bearer token every worker process shares through Redis (deliveries and
management calls alike). A device set is replaced whole (``PUT /buildings/{id}/devices/v1``), so
callers read, merge and write under the building's lock (``workers.moost.setup.update_device_set``).
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
from redis import Redis
from redis.exceptions import RedisError

from connector.core.keys import MOOST_TOKEN_KEY
from connector.core.redis_conn import reply_text
from connector.core.settings import Settings
from workers.deliver.http import ApiClient, ApiError, JsonApi
from workers.deliver.send import Outcome, timeouts_within

TOKEN_EARLY_RENEWAL_S = 300
"""Renew the shared MOOST token this long before it expires."""

TOKEN_LOCAL_CACHE_S = 60.0
"""How long a worker process reuses the token without asking Redis (saves a round trip per job)."""


class MoostTokens:
    """MOOST's bearer token, shared by every worker process through Redis."""

    def __init__(self, redis: Redis, settings: Settings, session: requests.Session, timeout_s: tuple[float, float]):
        self._redis = redis
        self._url = f"{settings.moost_base_url}/auth/token/v1"
        self._params = {"clientId": settings.moost_client_id, "clientSecret": settings.moost_client_secret}
        self._session = session
        self._timeout_s = timeout_s
        self._local: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return "MoostTokens(<hidden>)"

    def require(self, *, renew: bool = False) -> str:
        """A valid token for management calls (``renew``: a new one, not the shared one).

        Raises:
            ApiError: none could be had (the reason, never a credential; status 401 when MOOST refused
                the client credentials).
        """
        token = self.get(renew=renew)
        if isinstance(token, Outcome):
            status = f" (HTTP {token.status})" if token.status else ""
            raise ApiError(f"MOOST token: {token.reason}{status}", token.status)
        return token

    def renewed(self) -> str:
        """``require(renew=True)``: what management calls use after a 401."""
        return self.require(renew=True)

    def get(self, *, renew: bool = False, deadline: float | None = None) -> str | Outcome:
        """A valid token, or the ``Outcome`` explaining why none could be had."""
        if not renew:
            if self._local is not None and time.monotonic() < self._local[1]:
                return self._local[0]
            try:
                cached = self._redis.get(MOOST_TOKEN_KEY)
            except RedisError:
                cached = None
            if cached:
                token = reply_text(cached)
                self._local = (token, time.monotonic() + TOKEN_LOCAL_CACHE_S)
                return token
        self._local = None
        timeout = timeouts_within(self._timeout_s, deadline, now=time.monotonic())
        if timeout is None:
            return Outcome("retry", "deadline")
        try:
            response = self._session.get(self._url, params=self._params, timeout=timeout)
        except requests.Timeout:
            return Outcome("retry", "moost-token-timeout")
        except requests.RequestException:
            return Outcome("retry", "moost-token-connection-error")
        if response.status_code == 401:
            return Outcome("failed", "moost-credentials-rejected", 401)
        if response.status_code != 200:
            return Outcome("retry", f"moost-token-http-{response.status_code}", response.status_code)
        try:
            doc = response.json()
            token = doc["access_token"]
            lifetime = int(doc.get("expires_in") or 86400)
        except (ValueError, KeyError, TypeError):
            return Outcome("retry", "moost-token-unreadable", 200)
        with contextlib.suppress(RedisError):  # still usable by this process
            self._redis.set(MOOST_TOKEN_KEY, token, ex=max(60, lifetime - TOKEN_EARLY_RENEWAL_S))
        self._local = (
            str(token),
            time.monotonic() + min(TOKEN_LOCAL_CACHE_S, max(1, lifetime - TOKEN_EARLY_RENEWAL_S)),
        )
        return str(token)



class MoostApi(ApiClient):
    """MOOST building calls with a bearer token from ``token()`` (``renew()`` after a 401): the token
    deliveries use (``MoostTokens``)."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        renew: Callable[[], str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._api = JsonApi(base_url, token, name="MOOST", renew=renew, session=session)

    def buildings(self) -> list[dict[str, Any]]:
        """Every building of the customer, with its devices."""
        _, doc = self._api.call("GET", "/buildings/v1")
        return list(doc or [])

    def building(self, building_id: str) -> dict[str, Any] | None:
        """The building, or None when MOOST does not know it (404)."""
        try:
            _, doc = self._api.call("GET", f"/buildings/{_segment(building_id)}/v1")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(doc or {})

    def create_building(self, body: dict[str, Any]) -> bool:
        """Create the building; False when it already exists (409)."""
        status, _ = self._api.call("POST", "/buildings/v1", json=body, ok=(200, 201, 409))
        return status != 409

    def replace_devices(self, building_id: str, devices: list[dict[str, Any]]) -> None:
        self._api.call("PUT", f"/buildings/{_segment(building_id)}/devices/v1", json=devices)


def _segment(building_id: str) -> str:
    # MOOST's building ids are [a-zA-Z0-9:._-]: nothing to escape, but never let one reach the path raw.
    return urllib.parse.quote(building_id, safe="")
