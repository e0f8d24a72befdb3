"""Signed, unique DT Data Connector pushes for the benchmarks.

Every push is a compact JSON body shaped like a real DT temperature event (~650 bytes)
with its own ``eventId``, plus an ``X-Dt-Signature`` token: an HS256 JWT over the
claims ``checksum_sha256`` (hex SHA-256 of the exact body), ``iat``, ``exp`` and ``jti``,
the way DT signs pushes. The token is assembled by hand because pools of ~100k pushes
are generated up front; ``check_against_pyjwt`` verifies one with PyJWT so a mistake
here cannot pass silently (the receiver would answer 401 anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import jwt

from connector.core.times import format_rfc3339

HS_HEADER = "X-Dt-Signature"
PATH = "/dt/events"
TOKEN_LIFETIME_S = 3600
"""Generous, so a pool made at the start stays valid for the whole benchmark."""

_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # DT ids are xid-style lowercase base32
_DEVICES = 64


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


def _base32(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _xid(prefix: str, number: int) -> str:
    """A 20-character DT-looking id: 8 characters of ``prefix`` and ``number`` in base32."""
    return prefix + _base32(number, 12)


class PushFactory:
    """Makes push ``i`` of one run: a distinct ``eventId`` for every ``i`` and factory.

    ``tag`` (8 base32 characters, random by default) keeps pools made by different
    factories apart.
    """

    def __init__(self, secret: str, *, tag: str | None = None, now: float | None = None) -> None:
        self.secret = secret
        self._key = secret.encode("utf-8")
        self.tag = tag or _base32(secrets.randbits(40), 8)
        self.iat = int(now if now is not None else time.time())
        self._project = _xid("c0mf2gqk", 7)
        self._devices = [_xid("emuc0mhb", d) for d in range(_DEVICES)]
        self._stamps = [format_rfc3339(self.iat - 60 + s + (s * 7919 % 1000) / 1000, digits=6) for s in range(60)]

    def body(self, i: int) -> bytes:
        """The compact JSON body of push ``i``."""
        device = self._devices[i % _DEVICES]
        stamp = self._stamps[i % 60]
        value = round(18.0 + (i % 700) / 100, 2)
        doc = {
            "event": {
                "eventId": _xid(self.tag, i),
                "targetName": f"projects/{self._project}/devices/{device}",
                "eventType": "temperature",
                "data": {
                    "temperature": {
                        "value": value,
                        "updateTime": stamp,
                        "samples": [
                            {"value": value, "sampleTime": stamp},
                            {"value": round(value - 0.05, 2), "sampleTime": stamp},
                        ],
                        "isBackfilled": False,
                    }
                },
                "timestamp": stamp,
            },
            "labels": {"name": f"Cold room {i % _DEVICES}", "site": "benchmark-depot", "kind": "fridge"},
            "metadata": {
                "deviceId": device,
                "projectId": self._project,
                "deviceType": "temperature",
                "productNumber": "102081",
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def token(self, body: bytes, i: int) -> str:
        """The ``X-Dt-Signature`` JWT for ``body``."""
        claims = (
            f'{{"checksum_sha256":"{hashlib.sha256(body).hexdigest()}","iat":{self.iat},'
            f'"exp":{self.iat + TOKEN_LIFETIME_S},"jti":"{self.tag}-{i}"}}'
        )
        signing_input = f"{_JWT_HEADER}.{_b64url(claims.encode('ascii'))}"
        signature = hmac.digest(self._key, signing_input.encode("ascii"), "sha256")
        return f"{signing_input}.{_b64url(signature)}"

    def push(self, i: int) -> tuple[bytes, str]:
        """``(body, token)`` of push ``i``."""
        body = self.body(i)
        return body, self.token(body, i)

    def pushes(self, count: int, *, start: int = 0) -> Iterator[tuple[bytes, str]]:
        for i in range(start, start + count):
            yield self.push(i)

    def check_against_pyjwt(self) -> None:
        """Decode one token with PyJWT; raise if it or its checksum does not verify."""
        body, token = self.push(0)
        claims = jwt.decode(token, self._key, algorithms=["HS256"], options={"require": ["exp", "iat"]})
        if claims["checksum_sha256"] != hashlib.sha256(body).hexdigest():
            raise AssertionError("generated token does not bind the body")


def write_pool(factory: PushFactory, path: Path, count: int) -> int:
    """Write ``count`` pushes to ``path``, one ``<body>\\t<token>`` line each; returns the bytes written.

    Compact JSON never contains a raw tab or newline, so the format needs no escaping.
    """
    size = 0
    with path.open("wb") as out:
        for body, token in factory.pushes(count):
            line = b"%s\t%s\n" % (body, token.encode("ascii"))
            size += len(line)
            out.write(line)
    return size
