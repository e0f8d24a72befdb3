"""What tests share besides fixtures: test secrets, DT-shaped push bodies and signatures, and posting them.

Fixtures (the session's Redis server, apps, clients) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jwt
from flask.testing import FlaskClient
from redis import Redis

from connector.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
"""The project's checkout."""

# Obviously fake test secrets (>= 32 bytes so PyJWT does not warn when it signs with them).
SECRET = "test-only-secret-0123456789abcdef-not-real"
OLD_SECRET = "test-only-previous-secret-abcdef0123456789"


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    # Access lines written at once, so they land in the test's own captured output.
    options: dict[str, Any] = {"redis_url": redis_url, "signature_secrets": (SECRET,), "access_log_flush_ms": 0}
    options.update(overrides)
    return Settings(**options)


def dt_body(
    event_id: str = "cpbg96qngr7ai7ldarrg",
    event_type: str = "temperature",
    device_id: str = "bchonod7rihjtvdmd2vg",
    data: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> bytes:
    """A push body shaped and serialised (compact, DT key order) like DT's."""
    ts = "2024-05-29T10:34:03.970415Z"
    if data is None:
        data = {
            event_type: {
                "value": 27.05,
                "updateTime": ts,
                "samples": [{"value": 27.05, "sampleTime": ts}],
                "isBackfilled": False,
            }
        }
    doc = {
        "event": {
            "eventId": event_id,
            "targetName": f"projects/c0md3mm0c7pet3cfe9f0/devices/{device_id}",
            "eventType": event_type,
            "data": data,
            "timestamp": ts,
        },
        "labels": {"name": "Fridge 3"} if labels is None else labels,
        "metadata": {
            "deviceId": device_id,
            "projectId": "c0md3mm0c7pet3cfe9f0",
            "deviceType": "temperature",
            "productNumber": "102150",
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(
    body: bytes,
    secret: str = SECRET,
    *,
    now: float | None = None,
    lifetime_s: int = 3600,
    headers: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> str:
    """An ``X-Dt-Signature`` token as DT makes it; claims can be overridden or removed (None)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "checksum": hashlib.sha1(body).hexdigest(),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": "ckr0n6f8evj0l9c8gd90",
    }
    for key, value in claim_overrides.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers)


def push(client: FlaskClient, body: bytes, token: str | None = None, **headers: str) -> Any:
    """POST ``body`` to /dt/events, signed unless ``token`` is given ('' for unsigned)."""
    if token is None:
        token = sign(body)
    all_headers = {"Content-Type": "application/json", **headers}
    if token:
        all_headers["X-Dt-Signature"] = token
    return client.post("/dt/events", data=body, headers=all_headers)


def queued_ids(redis: Redis, queue: str = "dt-forward") -> list[str]:
    return [raw.decode() for raw in redis.lrange(f"rq:queue:{queue}", 0, -1)]


SUMMARY_LINES: list[str] = []
"""Lines a test wants shown after the run even when its output is captured (the fault suite's)."""
