"""MOOST's building and device-set API (I/O edge; shared/reference/downstream-apis.md §1.6).

A device set is replaced whole (``PUT /buildings/{id}/devices/v1``), so callers read, merge and
write under the building's lock (``moost_sync.building_lock``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import requests

from workers.provision.http import ApiClient, ApiError, JsonApi


class MoostApi(ApiClient):
    """MOOST building calls with a bearer token from ``token()`` (``renew()`` after a 401): the token
    deliveries use (``workers.deliver.destinations.MoostTokens``)."""

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
