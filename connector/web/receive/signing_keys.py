"""DT's data-connector signing keys, fetched via OpenID discovery and cached (I/O edge).

The discovery document (``DT_OIDC_DISCOVERY_URL``) names the ``issuer`` and the
``jwks_uri``; keys are EC P-256 selected by ``kid``. Keys are cached for ``ttl_s`` and
the set is re-fetched when an unknown ``kid`` shows up (key rotation).

Fetches are limited in every state, so forged pushes cannot make us hammer DT's identity
service: at most one attempt per ``min_refresh_s``, whether keys are cached or not (at
start, or after a failed first fetch), and one at a time. A push never waits behind
another push's fetch: while one is under way, the others use the cached keys, or get
``KeysUnavailable`` (503, DT retries) when there are none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from connector.web.receive.signature import KeysUnavailable

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


def issuer_of(discovery_url: str) -> str:
    """The issuer a discovery URL belongs to (OpenID Connect Discovery §4)."""
    if not discovery_url.endswith(DISCOVERY_SUFFIX):
        raise ValueError(f"discovery URL must end with {DISCOVERY_SUFFIX}")
    return discovery_url[: -len(DISCOVERY_SUFFIX)]


class JwksKeyStore:
    """Resolves a ``kid`` to a public key; usable as ``VerificationPolicy.es_key_for``."""

    def __init__(
        self,
        discovery_url: str,
        *,
        timeout_s: float = 3.0,
        ttl_s: float = 900.0,
        min_refresh_s: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.discovery_url = discovery_url
        self.issuer = issuer_of(discovery_url)
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._unavailable_detail = "DT signing keys are being fetched"

    def __call__(self, kid: str) -> Any:
        """The key for ``kid``, or None if DT does not publish it (as far as we can tell now).

        Raises:
            KeysUnavailable: no key set is cached and none can be fetched right now.
        """
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl_s
        if stale or kid not in self._keys:
            self._refresh(now)
        if not self._keys:
            raise KeysUnavailable("keys-unavailable", self._unavailable_detail)
        return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        """Fetch the key set unless one was tried within ``min_refresh_s`` or is being fetched."""
        if self._attempted_at is not None and now - self._attempted_at < self.min_refresh_s:
            return
        if not self._lock.acquire(blocking=False):
            return  # another push is fetching: use what is cached meanwhile
        try:
            if self._attempted_at is not None and now - self._attempted_at < self.min_refresh_s:
                return
            self._attempted_at = now
            try:
                keys = self._fetch()
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                self._unavailable_detail = f"could not fetch DT signing keys ({type(exc).__name__})"
                return  # keep serving the cached set, if any, through a blip at DT
            self._keys = keys
            self._fetched_at = now
        finally:
            self._lock.release()

    def _fetch(self) -> dict[str, Any]:
        discovery = self._get_json(self.discovery_url)
        if discovery.get("issuer") != self.issuer:
            raise ValueError("discovery document names a different issuer")
        jwks = self._get_json(discovery["jwks_uri"])
        keys: dict[str, Any] = {}
        for jwk in jwks["keys"]:
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[jwk["kid"]] = PyJWK(jwk, algorithm="ES256").key
            except (PyJWKError, KeyError):
                continue
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self._session.get(url, timeout=self._timeout_s)
        response.raise_for_status()
        doc = response.json()
        if not isinstance(doc, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return doc
