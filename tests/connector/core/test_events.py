"""Tests for connector.core.events.parse_push."""

from __future__ import annotations

import json

import pytest

from connector.core.errors import MalformedPush
from connector.core.events import parse_push
from tests.support.helpers import dt_body


def test_parses_dt_temperature_push():
    push = parse_push(dt_body(event_id="evt1", device_id="dev9"))
    assert (push.event_id, push.event_type, push.device_id) == ("evt1", "temperature", "dev9")


def test_unknown_event_type_is_accepted():
    push = parse_push(dt_body(event_type="quantumFlux", data={"quantumFlux": {"value": 1}}))
    assert push.event_type == "quantumFlux"


def test_device_falls_back_to_target_name():
    doc = json.loads(dt_body(device_id="devX"))
    del doc["metadata"]
    assert parse_push(json.dumps(doc).encode()).device_id == "devX"


def test_labels_changed_has_no_keyed_data():
    body = dt_body(event_type="labelsChanged", data={"added": {"room": "1"}, "modified": {}, "removed": []})
    assert parse_push(body).event_type == "labelsChanged"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{}", "not-utf8"),
        ('{"event":{"eventId":"a","eventType":"t"}}'.encode("utf-16"), "not-utf8"),
        (b"", "not-json"),
        (b"{", "not-json"),
        (b'{"event":{"eventId":"a","eventType":"t","data":NaN}}', "not-json"),
        (b'{"event":{"eventId":"a","eventType":"t","data":Infinity}}', "not-json"),
        (b"[" * 100000 + b"]" * 100000, "not-json"),
        (b"[]", "not-an-object"),
        (b'"event"', "not-an-object"),
        (b"{}", "no-event"),
        (b'{"event":[]}', "no-event"),
        (b'{"event":{"eventType":"t"}}', "no-event-id"),
        (b'{"event":{"eventId":"","eventType":"t"}}', "no-event-id"),
        (b'{"event":{"eventId":7,"eventType":"t"}}', "no-event-id"),
        (b'{"event":{"eventId":"' + b"a" * 300 + b'","eventType":"t"}}', "no-event-id"),
        (b'{"event":{"eventId":"a"}}', "no-event-type"),
        (b'{"event":{"eventId":"a","eventType":null}}', "no-event-type"),
        (b'{"event":{"eventId":"a","eventType":"t"},"labels":[]}', "bad-labels"),
        (b'{"event":{"eventId":"a","eventType":"t"},"metadata":"x"}', "bad-metadata"),
    ],
)
def test_malformed(body, reason):
    with pytest.raises(MalformedPush) as info:
        parse_push(body)
    assert info.value.reason == reason
    assert info.value.status_code == 400


def test_a_body_nested_deeper_than_the_job_side_reads_is_refused():
    from connector.core.events import MAX_JSON_DEPTH, json_depth

    def body(levels: int) -> bytes:
        data = b'{"x":' * levels + b"1" + b"}" * levels
        return b'{"event":{"eventId":"d1","eventType":"temperature","data":%s}}' % data

    at_limit = body(MAX_JSON_DEPTH - 2)  # the body and "event" are two levels
    assert json_depth(json.loads(at_limit)) == MAX_JSON_DEPTH
    assert parse_push(at_limit).event_id == "d1"
    with pytest.raises(MalformedPush) as refused:
        parse_push(body(MAX_JSON_DEPTH - 1))
    assert refused.value.reason == "too-deep"
    # Many brackets inside strings are not nesting.
    flat = b'{"event":{"eventId":"d2","eventType":"t","note":"%s"}}' % (b"[{" * 100)
    assert parse_push(flat).event_id == "d2"
