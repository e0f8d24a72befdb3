"""The small JSON-over-HTTPS client MOOST's and Spot AI's management APIs share (I/O edge).

Management calls (buildings, device sets, integrations, event types) are few and made by
``setup``, ``doctor`` and the labelsChanged sync, not per event, so they do not go through the
delivery ``Sender``. Every call has explicit timeouts. Errors name the method, the path (never
the query, which carries MOOST's credentials) and the status, never a credential.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

import requests

from workers.deliver.send import Outcome, classify, timeouts_within

DEFAULT_TIMEOUT_S = (3.05, 15.0)
"""(connect, read) seconds for a management call."""


class ApiError(Exception):
    """A management call failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JsonApi:
    """Calls under ``base_url`` with a bearer token from ``token()`` (asked for on every call). With
    ``renew``, a 401 is answered by one more try with ``renew()``'s token (expired or revoked early)."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        name: str,
        renew: Callable[[], str] | None = None,
        session: requests.Session | None = None,
        timeout_s: tuple[float, float] = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._renew = renew
        self._name = name
        self._session = session or requests.Session()
        self._timeout_s = timeout_s
        self._deadline: float | None = None

    def within(self, deadline: float | None) -> JsonApi:
        """This client, with every call's timeouts cut to end by ``deadline`` (``time.monotonic()``;
        a job's), and no call started with too little time left."""
        bounded = copy.copy(self)
        bounded._deadline = deadline
        return bounded

    def __repr__(self) -> str:
        return f"JsonApi({self._name}, {self.base_url})"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> tuple[int, Any]:
        """``(status, decoded JSON or None)`` for an answer whose status is in ``ok``.

        Raises:
            ApiError: no answer, or any other status (its body's first 200 characters in the message).
        """
        response = self._send(method, path, self._token(), json=json, params=params)
        if response.status_code == 401 and self._renew is not None:
            response = self._send(method, path, self._renew(), json=json, params=params)
        if response.status_code not in ok:
            raise ApiError(
                f"{self._name} {method} {path}: HTTP {response.status_code}: {response.text[:200]}",
                response.status_code,
            )
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise ApiError(f"{self._name} {method} {path}: answer is not JSON", response.status_code) from None

    def _send(
        self, method: str, path: str, token: str, *, json: Any, params: Mapping[str, Any] | None
    ) -> requests.Response:
        timeout = timeouts_within(self._timeout_s, self._deadline, now=time.monotonic())
        if timeout is None:
            raise ApiError(f"{self._name} {method} {path}: the job's deadline came first")
        headers = {"Authorization": f"Bearer {token}"}
        try:
            return self._session.request(
                method, self.base_url + path, json=json, params=params, headers=headers, timeout=timeout
            )
        except requests.RequestException as exc:
            raise ApiError(f"{self._name} {method} {path}: {type(exc).__name__} (unreachable)") from None


class ApiClient:
    """Base of the MOOST and Spot AI clients: their calls go through ``self._api``."""

    _api: JsonApi

    def within(self, deadline: float | None) -> Self:
        """The same client with calls cut to end by ``deadline`` (see ``JsonApi.within``)."""
        bounded = copy.copy(self)
        bounded._api = self._api.within(deadline)
        return bounded

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._api.base_url})"


def api_outcome(exc: ApiError, destination: str, *, now: float) -> Outcome:
    """A failed management call as a delivery outcome, by the rules deliveries follow (``classify``). Pure."""
    if exc.status is None:
        return Outcome("retry", f"{destination}-unreachable")
    return classify(exc.status, {}, str(exc), now=now)
