"""DT-like pushes for ``dt-connector send-test-event``: built and signed as DT does. Pure.

Bodies are serialised compactly in DT's key order (``event``, ``labels``, ``metadata``;
inside ``event``: ``eventId``, ``targetName``, ``eventType``, ``data``, ``timestamp``)
with a data object of the right shape for each of DT's 19 event types. Signatures:

* ``X-Dt-Signature``: HS256 over ``checksum`` (SHA-1), ``checksum_sha256``, ``iat``,
  ``exp`` (1 h) and ``jti``, with the connector's signature secret;
* ``DT-Asymmetric-Signature``: ES256 with ``kid`` over ``checksum_sha256``, ``iat``,
  ``exp`` (5 min), ``iss`` and ``sub`` (the organisation), with a local key.

Randomness and time come in as arguments (``random.Random``, ``now``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from connector.core.events import DT_EVENT_DEVICE_TYPES, DT_EVENT_TYPES
from connector.core.times import format_rfc3339

HS_TOKEN_LIFETIME_S = 3600
ES_TOKEN_LIFETIME_S = 300

_XID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def xid(rng: random.Random) -> str:
    """A 20-character id in DT's style (lowercase base32)."""
    return "".join(rng.choice(_XID_ALPHABET) for _ in range(20))


def _sampled(name: str, value: Any, at: str) -> dict[str, Any]:
    samples = [{"value": value, "sampleTime": at}]
    return {name: {"value": value, "updateTime": at, "samples": samples, "isBackfilled": False}}


def _state(name: str, *states: str) -> Callable[[random.Random, str], dict[str, Any]]:
    return lambda rng, at: {name: {"state": rng.choice(states), "updateTime": at}}


def _humidity(rng: random.Random, at: str) -> dict[str, Any]:
    temperature, humidity = round(rng.uniform(18, 26), 2), round(rng.uniform(30, 60), 1)
    sample = {"temperature": temperature, "relativeHumidity": humidity, "sampleTime": at}
    return {
        "humidity": {
            "temperature": temperature,
            "relativeHumidity": humidity,
            "samples": [sample],
            "isBackfilled": False,
            "updateTime": at,
        }
    }


def _network(rng: random.Random, at: str) -> dict[str, Any]:
    strength, rssi = rng.randint(10, 100), rng.randint(-100, -50)
    return {
        "networkStatus": {
            "signalStrength": strength,
            "rssi": rssi,
            "updateTime": at,
            "cloudConnectors": [{"id": "bdkjbo2v0000m8a4g7bg", "signalStrength": strength, "rssi": rssi}],
            "transmissionMode": "LOW_POWER_STANDARD_MODE",
        }
    }


DATA_BUILDERS: dict[str, Callable[[random.Random, str], dict[str, Any]]] = {
    "touch": lambda rng, at: {"touch": {"updateTime": at}},
    "temperature": lambda rng, at: _sampled("temperature", round(rng.uniform(2, 26), 2), at),
    "objectPresent": _state("objectPresent", "PRESENT", "NOT_PRESENT"),
    "humidity": _humidity,
    "objectPresentCount": lambda rng, at: {"objectPresentCount": {"total": rng.randint(0, 10_000), "updateTime": at}},
    "touchCount": lambda rng, at: {"touchCount": {"total": rng.randint(0, 10_000), "updateTime": at}},
    "waterPresent": _state("waterPresent", "PRESENT", "NOT_PRESENT"),
    "co2": lambda rng, at: {"co2": {"ppm": rng.randint(400, 1500), "updateTime": at}},
    "pressure": lambda rng, at: {"pressure": {"pascal": round(rng.uniform(98_000, 103_000), 1), "updateTime": at}},
    "motion": _state("motion", "MOTION_DETECTED", "NO_MOTION_DETECTED"),
    "deskOccupancy": lambda rng, at: {
        "deskOccupancy": {"state": rng.choice(("OCCUPIED", "NOT_OCCUPIED")), "remarks": [], "updateTime": at}
    },
    "contact": _state("contact", "OPEN", "CLOSED"),
    "probeWireStatus": _state("probeWireStatus", "INVALID_WIRE_CONFIGURATION", "TWO_WIRE", "THREE_WIRE", "FOUR_WIRE"),
    "networkStatus": _network,
    "batteryStatus": lambda rng, at: {"batteryStatus": {"percentage": rng.randint(1, 100), "updateTime": at}},
    "labelsChanged": lambda rng, at: {"added": {}, "modified": {"name": f"Sensor {rng.randint(1, 99)}"}, "removed": []},
    "connectionStatus": lambda rng, at: {
        "connectionStatus": {"connection": "ETHERNET", "available": ["ETHERNET", "CELLULAR"], "updateTime": at}
    },
    "ethernetStatus": lambda rng, at: {
        "ethernetStatus": {"macAddress": "f0:b5:b7:00:0a:08", "ipAddress": "10.0.0.17", "errors": [], "updateTime": at}
    },
    "cellularStatus": lambda rng, at: {
        "cellularStatus": {"signalStrength": rng.randint(0, 100), "errors": [], "updateTime": at}
    },
}


@dataclass(frozen=True)
class Fleet:
    """The simulated project: one device per event type, with labels like a DT Studio setup."""

    project_id: str
    devices: dict[str, str]
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def create(cls, rng: random.Random, *, building: str = "site-42") -> Fleet:
        devices = {event_type: xid(rng) for event_type in DT_EVENT_TYPES}
        labels = {
            event_type: {"name": f"Test {DT_EVENT_DEVICE_TYPES[event_type]} {n + 1}", "moost_building": building}
            for n, event_type in enumerate(DT_EVENT_TYPES)
        }
        return cls(project_id=xid(rng), devices=devices, labels=labels)


def build_push(event_type: str, *, fleet: Fleet, event_id: str, now: float, rng: random.Random) -> bytes:
    """The compact JSON body DT would push for a new ``event_type`` event at ``now``."""
    if event_type not in DATA_BUILDERS:
        raise ValueError(f"unknown DT event type {event_type!r} (known: {', '.join(DT_EVENT_TYPES)})")
    at = _utc(now)
    device = fleet.devices[event_type]
    doc = {
        "event": {
            "eventId": event_id,
            "targetName": f"projects/{fleet.project_id}/devices/{device}",
            "eventType": event_type,
            "data": DATA_BUILDERS[event_type](rng, at),
            "timestamp": at,
        },
        "labels": fleet.labels.get(event_type, {}),
        "metadata": {
            "deviceId": device,
            "projectId": fleet.project_id,
            "deviceType": DT_EVENT_DEVICE_TYPES[event_type],
            "productNumber": "",  # as for DT's emulated devices
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sign_hs256(body: bytes, secret: str, *, now: float, jti: str) -> str:
    """An ``X-Dt-Signature`` token for ``body``, as DT makes it."""
    issued = int(now)
    claims = {
        "checksum": hashlib.sha1(body, usedforsecurity=False).hexdigest(),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "exp": issued + HS_TOKEN_LIFETIME_S,
        "iat": issued,
        "jti": jti,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass(frozen=True)
class AsymmetricSigner:
    """Signs like DT's identity service: ES256, ``kid``, issuer and organisation."""

    key: ec.EllipticCurvePrivateKey
    kid: str
    issuer: str
    org_id: str

    def __repr__(self) -> str:
        return f"AsymmetricSigner(kid={self.kid!r}, issuer={self.issuer!r}, org_id={self.org_id!r})"

    def sign(self, body: bytes, *, now: float) -> str:
        issued = int(now)
        claims = {
            "checksum_sha256": hashlib.sha256(body).hexdigest(),
            "exp": issued + ES_TOKEN_LIFETIME_S,
            "iat": issued,
            "iss": self.issuer,
            "sub": self.org_id,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        """The public key set a discovery document would point at."""
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": self.kid, "use": "sig", "alg": "ES256"})
        return {"keys": [public]}


def discovery_document(issuer: str, jwks_uri: str) -> Mapping[str, Any]:
    """A minimal OpenID discovery document for a local signing identity."""
    return {"issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": ["ES256"]}


def _utc(at: float) -> str:
    """``at`` as DT writes times: UTC, microseconds, ``Z``."""
    return format_rfc3339(at, digits=6)
