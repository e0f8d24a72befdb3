"""Verification of DT Data Connector signatures. Pure: no I/O, no clock, no settings.

DT signs each push with one or both of:

* ``X-Dt-Signature`` — a JWT signed HS256 with the connector's signature secret, whose
  ``checksum_sha256`` (and legacy SHA-1 ``checksum``) claim binds it to the raw body.
* ``DT-Asymmetric-Signature`` — a JWT signed ES256 by DT's identity service; ``iss`` is
  the issuer from the OpenID discovery document and ``sub`` the organisation id.

Everything here works on the exact raw body bytes *before* they are parsed, takes the
current time as ``now`` (Unix seconds) and raises ``BadSignature`` with a reason slug.
A token naming an audience (``aud``) is refused unless it names the configured one
(RFC 7519 §4.1.3; DT's own verifier does the same).

ES256 tokens are decoded by PyJWT (signature, algorithm, issuer, audience, critical headers).
The HS256 check is written out instead: it runs on every push, and with PyJWT's decode the
web workers spent 695 instead of 556 µs of CPU per push and the receiver fell from 0.91 to
0.69 of durable-min's requests per second (``bench.ingress``, python-svc, 2026-12-04). The
tests cross-check it against PyJWT-made tokens.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from connector.core.errors import BadSignature, QueueUnavailable

HS_HEADER = "X-Dt-Signature"
ES_HEADER = "DT-Asymmetric-Signature"

_ES256_DECODER = jwt.PyJWT(
    # Times are checked against ``now`` by ``_check_times`` (pure: no clock read here).
    options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["iss"]}
)

KeyResolver = Callable[[str], Any]
"""Maps a JWT ``kid`` to a public key object, or returns None when it is unknown.

May raise ``KeysUnavailable`` when the key set cannot be fetched right now.
"""


class KeysUnavailable(QueueUnavailable):
    """DT's signing keys could not be fetched: our problem, so 503 and DT retries."""


@dataclass(frozen=True)
class VerificationPolicy:
    """What a push must carry to be accepted.

    Attributes:
        secrets: UTF-8 encoded HS256 secrets; any one verifies (rotation).
        es_key_for: key resolver for ES256, or None when asymmetric checking is off.
        es_issuer: required ``iss`` of ES256 tokens.
        org_id: required ``sub`` of ES256 tokens, or None to accept any organisation.
        audience: the ``aud`` a token may name; None refuses every token that names one.
        leeway_s: clock skew tolerated on time claims.
        skip: accept unsigned pushes (explicit local-experiment opt-out).
    """

    secrets: tuple[bytes, ...] = ()
    es_key_for: KeyResolver | None = None
    es_issuer: str = ""
    org_id: str | None = None
    audience: str | None = None
    leeway_s: float = 60.0
    skip: bool = False

    def __repr__(self) -> str:
        return (
            f"VerificationPolicy(secrets=<{len(self.secrets)} hidden>, es={self.es_key_for is not None}, "
            f"org_id={self.org_id!r}, leeway_s={self.leeway_s}, skip={self.skip})"
        )


def verify_push(
    body: bytes,
    *,
    hs_token: str | None,
    es_token: str | None,
    policy: VerificationPolicy,
    now: float,
) -> None:
    """Check that ``body`` was signed by DT for this connector.

    Every configured scheme is required: with a secret configured, ``X-Dt-Signature`` must be
    present and verify (it is the only claim that names this connector); with asymmetric
    checking on, ``DT-Asymmetric-Signature`` must be present and verify too. A header of a
    scheme that is not configured is ignored (DT sends both while a deployment checks one).

    Raises:
        BadSignature: missing, malformed, forged, expired or body-mismatched signature.
        KeysUnavailable: the ES256 key set could not be fetched (answer 503).
    """
    if policy.skip:
        return
    if policy.secrets:
        if hs_token is None:
            raise BadSignature("signature-missing", f"expected header {HS_HEADER}")
        verify_hs256(
            body, hs_token, secrets=policy.secrets, now=now, leeway_s=policy.leeway_s, audience=policy.audience
        )
    if policy.es_key_for is not None:
        if es_token is None:
            raise BadSignature("signature-missing", f"expected header {ES_HEADER}")
        verify_es256(
            body,
            es_token,
            key_for=policy.es_key_for,
            issuer=policy.es_issuer,
            org_id=policy.org_id,
            now=now,
            leeway_s=policy.leeway_s,
            audience=policy.audience,
        )


def verify_hs256(
    body: bytes,
    token: str,
    *,
    secrets: Sequence[bytes],
    now: float,
    leeway_s: float,
    audience: str | None = None,
) -> dict[str, Any]:
    """Verify an ``X-Dt-Signature`` token against ``body``; return its claims.

    The algorithm is pinned to HS256 whatever the token header says.

    Raises:
        BadSignature: on any failure, with a specific reason.
    """
    header, claims, signing_input, signature_segment = _split(token)
    if header.get("alg") != "HS256":
        raise BadSignature("alg-not-allowed", f"X-Dt-Signature must be HS256, not {header.get('alg')!r}")
    # Comparing canonical encodings (rather than decoding the signature) is both faster
    # and stricter: a signature segment with non-canonical trailing bits does not match.
    signature = signature_segment.encode("ascii")
    for secret in secrets:
        mac = _keyed_hmac(secret).copy()
        mac.update(signing_input)
        if hmac.compare_digest(_b64encode(mac.digest()), signature):
            break
    else:
        raise BadSignature("signature-invalid", "X-Dt-Signature does not verify with the configured secret(s)")
    _check_times(claims, now=now, leeway_s=leeway_s)
    _check_audience(claims.get("aud"), audience)
    if "checksum_sha256" in claims:
        _check_checksum(claims["checksum_sha256"], hashlib.sha256(body).hexdigest())
    elif "checksum" in claims:
        # Legacy DT tokens carry only a SHA-1 checksum; accept it only when SHA-256 is absent.
        _check_checksum(claims["checksum"], hashlib.sha1(body, usedforsecurity=False).hexdigest())
    else:
        raise BadSignature("checksum-missing", "signature token has no checksum_sha256 or checksum claim")
    return claims


def verify_es256(
    body: bytes,
    token: str,
    *,
    key_for: KeyResolver,
    issuer: str,
    org_id: str | None,
    now: float,
    leeway_s: float,
    audience: str | None = None,
) -> dict[str, Any]:
    """Verify a ``DT-Asymmetric-Signature`` token against ``body``; return its claims.

    Raises:
        BadSignature: on any failure, with a specific reason.
        KeysUnavailable: when ``key_for`` cannot reach the key set.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise BadSignature("token-malformed", "signature header is not a compact JWT") from None
    if header.get("alg") != "ES256":
        raise BadSignature("alg-not-allowed", f"DT-Asymmetric-Signature must be ES256, not {header.get('alg')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BadSignature("key-unknown", "DT-Asymmetric-Signature has no kid")
    key = key_for(kid)
    if key is None:
        raise BadSignature("key-unknown", f"no DT signing key with kid {kid!r}")
    try:
        claims: dict[str, Any] = _ES256_DECODER.decode(
            token, key, algorithms=["ES256"], issuer=issuer, audience=audience
        )
    except (jwt.InvalidIssuerError, jwt.MissingRequiredClaimError):
        raise BadSignature("issuer-mismatch", "DT-Asymmetric-Signature has an unexpected issuer") from None
    except jwt.InvalidAudienceError:
        raise BadSignature("audience-not-allowed", "DT-Asymmetric-Signature names an audience") from None
    except (jwt.InvalidSignatureError, jwt.InvalidKeyError, ValueError, TypeError):
        # (a key the resolver got wrong is no valid key either)
        raise BadSignature("signature-invalid", "DT-Asymmetric-Signature does not verify") from None
    except jwt.InvalidTokenError:
        raise BadSignature("token-malformed", "DT-Asymmetric-Signature is not a valid JWT") from None
    _check_times(claims, now=now, leeway_s=leeway_s)
    if org_id is not None and claims.get("sub") != org_id:
        raise BadSignature("org-mismatch", "DT-Asymmetric-Signature is for another DT organisation")
    if "checksum_sha256" not in claims:
        raise BadSignature("checksum-missing", "DT-Asymmetric-Signature has no checksum_sha256 claim")
    _check_checksum(claims["checksum_sha256"], hashlib.sha256(body).hexdigest())
    return claims


@functools.lru_cache(maxsize=16)
def _keyed_hmac(secret: bytes) -> hmac.HMAC:
    # Keying an HMAC (two hash blocks plus an OpenSSL digest lookup) is most of its cost
    # for a short token; a keyed template is copied per push instead.
    return hmac.new(secret, digestmod=hashlib.sha256)


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, str]:
    """Split a compact JWS into (header, claims, signing input, signature segment).

    Strict: exactly three unpadded base64url segments holding JSON objects. The header
    of every DT token is the same few bytes, so parsed headers are memoised (bounded).
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise BadSignature("token-malformed", "signature header is not a compact JWT")
    if not token.isascii() or "=" in token or "+" in token or "/" in token:  # padding or the non-URL-safe alphabet
        raise BadSignature("token-malformed", "signature header is not base64url-encoded")
    header = _HEADERS.get(parts[0])
    try:
        if header is None:
            header = _json_object(_b64decode(parts[0]))
            if len(_HEADERS) < _MAX_CACHED_HEADERS:
                _HEADERS[parts[0]] = header
        claims = _json_object(_b64decode(parts[1]))
    except (ValueError, binascii.Error):
        raise BadSignature("token-malformed", "signature header is not a compact JWT") from None
    if "crit" in header:
        raise BadSignature("token-malformed", "JWT uses critical extensions we do not understand")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), parts[2]


_HEADERS: dict[str, dict[str, Any]] = {}
_MAX_CACHED_HEADERS = 64


def _json_object(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("JWT header and claims must be JSON objects")
    return value


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url decoding (rejects stray characters and impossible lengths)."""
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64url length")
    raw = segment.encode("ascii").translate(_URLSAFE_TO_STD)
    return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)


def _b64encode(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_STD_TO_URLSAFE).rstrip(b"=")


_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
_STD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _check_times(claims: dict[str, Any], *, now: float, leeway_s: float) -> None:
    exp = claims.get("exp")
    if not _is_number(exp):
        raise BadSignature("token-malformed", "signature token has no numeric exp claim")
    if now > float(exp) + leeway_s:  # type: ignore[arg-type]
        raise BadSignature("token-expired", "signature token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or now + leeway_s < float(nbf)):
        raise BadSignature("token-not-yet-valid", "signature token is not valid yet (nbf)")
    iat = claims.get("iat")
    if iat is not None and (not _is_number(iat) or now + leeway_s < float(iat)):
        raise BadSignature("token-not-yet-valid", "signature token was issued in the future (iat)")


def _is_number(value: object) -> bool:
    """A JSON number: ``type`` (not isinstance) so that booleans, which are ints, do not count.

    Claims are parsed by orjson, which refuses NaN and Infinity, so any float is finite.
    """
    return type(value) in _NUMBER_TYPES


_NUMBER_TYPES = (int, float)


def _check_audience(claimed: object, audience: str | None) -> None:
    """Refuse a token naming an audience other than ``audience`` (RFC 7519 §4.1.3)."""
    if claimed is None:
        return
    named = claimed if isinstance(claimed, list) else [claimed]
    if audience is None or audience not in named:
        raise BadSignature("audience-not-allowed", "signature token names an audience this receiver is not")


def _check_checksum(claimed: object, actual_hex: str) -> None:
    if type(claimed) is not str or not claimed.isascii() or not hmac.compare_digest(claimed.lower(), actual_hex):
        raise BadSignature("checksum-mismatch", "signature was made for a different body")
