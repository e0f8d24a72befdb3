"""Spot AI's management API: integrations, integration event types and devices (I/O edge).

Paths and bodies per Spot Connect's published spec (shared/reference/downstream-apis.md §2.6):
lists are cursor-paged (``cursor``/``limit`` ≤ 100, answers ``{<items>, prev, next}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from workers.deliver.http import ApiClient, ApiError, JsonApi

PAGE_LIMIT = 100


class SpotApi(ApiClient):
    """Spot AI calls with one API key."""

    def __init__(self, base_url: str, api_key: str, *, session: requests.Session | None = None) -> None:
        self._api = JsonApi(base_url, lambda: api_key, name="Spot AI", session=session)

    # ---- integrations --------------------------------------------------------------------------

    def integration(self, integration_id: int) -> dict[str, Any] | None:
        """The integration, or None when Spot does not know it (404)."""
        try:
            _, doc = self._api.call("GET", f"/v1/integrations/{integration_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(doc["integration"])

    def integrations(self) -> list[dict[str, Any]]:
        _, doc = self._api.call("GET", "/v1/integrations")
        return list(doc.get("integrations") or [])

    def create_integration(self, name: str) -> dict[str, Any]:
        _, doc = self._api.call("POST", "/v1/integrations", json={"name": name, "integration_type": "custom"})
        return dict(doc["integration"])

    # ---- event types ---------------------------------------------------------------------------

    def event_types(self, integration_id: int) -> list[dict[str, Any]]:
        """Every event type of the integration (all pages)."""
        return list(self._paged(f"/v1/integrations/{integration_id}/event-types", "integration_event_types"))

    def create_event_type(self, integration_id: int, body: dict[str, Any]) -> dict[str, Any]:
        _, doc = self._api.call("POST", f"/v1/integrations/{integration_id}/event-types", json=body)
        return dict(doc["integration_event_type"])

    def update_event_type(self, integration_id: int, type_id: int, body: dict[str, Any]) -> dict[str, Any]:
        _, doc = self._api.call("PUT", f"/v1/integrations/{integration_id}/event-types/{type_id}", json=body)
        return dict(doc["integration_event_type"])

    # ---- devices -------------------------------------------------------------------------------

    def devices(self, integration_id: int) -> Iterator[dict[str, Any]]:
        return self._paged(f"/v1/integrations/{integration_id}/devices", "integration_devices")

    def rename_device(self, integration_id: int, device_id: int, name: str) -> dict[str, Any]:
        _, doc = self._api.call("PUT", f"/v1/integrations/{integration_id}/devices/{device_id}", json={"name": name})
        return dict(doc["integration_device"])

    def _paged(self, path: str, key: str) -> Iterator[dict[str, Any]]:
        cursor = ""
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            _, doc = self._api.call("GET", path, params=params)
            yield from doc.get(key) or []
            cursor = str(doc.get("next") or "")
            if not cursor or cursor in seen:  # a cursor seen before would loop for ever
                return
            seen.add(cursor)
