"""Realistic DT push bodies for every event type (shapes from DT's event documentation)."""

from __future__ import annotations

from typing import Any

from connector.core.events import DT_EVENT_DEVICE_TYPES

UPDATE = "2024-05-29T10:34:03.970415Z"
PROJECT = "c0md3mm0c7pet3cfe9f0"
CUSTOMER = "656730be2bc9719e6e5ed51d"
"""A MOOST customerId of the documented shape (24 letters or digits)."""
CLIENT_SECRET = "moost-client-secret-value-xyz"
SPOT_KEY = "spot-api-key-value-abc123"

DATA: dict[str, dict[str, Any]] = {
    "touch": {"touch": {"updateTime": UPDATE}},
    "temperature": {
        "temperature": {
            "value": 21.45,
            "updateTime": UPDATE,
            "samples": [{"value": 21.45, "sampleTime": UPDATE}],
            "isBackfilled": False,
        }
    },
    "objectPresent": {"objectPresent": {"state": "PRESENT", "updateTime": UPDATE}},
    "humidity": {
        "humidity": {
            "temperature": 22.1,
            "relativeHumidity": 41.5,
            "samples": [{"temperature": 22.1, "relativeHumidity": 41.5, "sampleTime": UPDATE}],
            "isBackfilled": False,
            "updateTime": UPDATE,
        }
    },
    "objectPresentCount": {"objectPresentCount": {"total": 4711, "updateTime": UPDATE}},
    "touchCount": {"touchCount": {"total": 12, "updateTime": UPDATE}},
    "waterPresent": {"waterPresent": {"state": "NOT_PRESENT", "updateTime": UPDATE}},
    "co2": {"co2": {"ppm": 612, "updateTime": UPDATE}},
    "pressure": {"pressure": {"pascal": 101325.5, "updateTime": UPDATE}},
    "motion": {"motion": {"state": "MOTION_DETECTED", "updateTime": UPDATE}},
    "deskOccupancy": {"deskOccupancy": {"state": "OCCUPIED", "remarks": ["INCOMPLETE_DATA"], "updateTime": UPDATE}},
    "contact": {"contact": {"state": "OPEN", "updateTime": UPDATE}},
    "probeWireStatus": {"probeWireStatus": {"state": "THREE_WIRE", "updateTime": UPDATE}},
    "networkStatus": {
        "networkStatus": {
            "signalStrength": 45,
            "rssi": -83,
            "transmissionMode": "LOW_POWER_STANDARD_MODE",
            "cloudConnectors": [{"id": "bdkjbo2v0000m8a4g7bg", "signalStrength": 45, "rssi": -83}],
            "updateTime": UPDATE,
        }
    },
    "batteryStatus": {"batteryStatus": {"percentage": 88, "updateTime": UPDATE}},
    "labelsChanged": {"added": {"room": "3.14"}, "modified": {"name": "Fridge 4"}, "removed": ["old"]},
    "connectionStatus": {
        "connectionStatus": {"connection": "ETHERNET", "available": ["ETHERNET"], "updateTime": UPDATE}
    },
    "ethernetStatus": {
        "ethernetStatus": {
            "macAddress": "f0:b5:b7:00:0a:08",
            "ipAddress": "10.0.0.1",
            "errors": [],
            "updateTime": UPDATE,
        }
    },
    "cellularStatus": {"cellularStatus": {"signalStrength": 80, "errors": [], "updateTime": UPDATE}},
}



def push_of(
    event_type: str,
    *,
    device_id: str = "bchonod7rihjtvdmd2vg",
    labels: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
    event_id: str = "cpbg96qngr7ai7ldarrg",
) -> dict[str, Any]:
    """A push body as DT sends it for ``event_type``."""
    return {
        "event": {
            "eventId": event_id,
            "targetName": f"projects/{PROJECT}/devices/{device_id}",
            "eventType": event_type,
            "data": DATA[event_type] if data is None else data,
            "timestamp": "2024-05-29T10:34:04.120000Z",
        },
        "labels": {"name": "Fridge 3", "moost_building": "site-42"} if labels is None else labels,
        "metadata": {
            "deviceId": device_id,
            "projectId": PROJECT,
            "deviceType": DT_EVENT_DEVICE_TYPES[event_type],
            "productNumber": "102150",
        },
    }
