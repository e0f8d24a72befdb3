"""DT's data-connector signing keys, fetched via OpenID discovery and cached (I/O edge).

The discovery document (``DT_OIDC_DISCOVERY_URL``) names the ``issuer`` and the
``jwks_uri``; keys are EC P-256 selected by ``kid``. Keys are cached for ``ttl_s`` and
the set is re-fetched once when an unknown ``kid`` shows up (key rotation), but not
more often than every ``min_refresh_s`` so forged ``kid`` values cannot make us hammer
DT's identity service. Fetch failures raise ``KeysUnavailable`` (503, DT retries).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from connector.receive.signature import KeysUnavailable

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
        self._min_refresh_s = min_refresh_s
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    def __call__(self, kid: str) -> Any:
        """The key for ``kid``, or None if DT does not publish it.

        Raises:
            KeysUnavailable: the key set could not be fetched and none is cached.
        """
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self._ttl_s:
            self._refresh(now, force=self._fetched_at is None)
        key = self._keys.get(kid)
        if key is None:
            self._refresh(now, force=False)
            key = self._keys.get(kid)
        return key

    def _refresh(self, now: float, *, force: bool) -> None:
        with self._lock:
            if not force and self._attempted_at is not None and now - self._attempted_at < self._min_refresh_s:
                return  # refreshed (or tried) moments ago, possibly by another thread
            self._attempted_at = now
            try:
                keys = self._fetch()
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                if self._keys:
                    return  # keep serving the cached set through a blip at DT
                raise KeysUnavailable(
                    "keys-unavailable", f"could not fetch DT signing keys ({type(exc).__name__})"
                ) from None
            self._keys = keys
            self._fetched_at = now

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
