"""Poison pushes: every push the receiver answers 200 reaches a terminal state a user can see
(delivered, or a dead letter with a reason), and what the worker could not read is refused at
the door. Each case is one that reached RQ's failed registry, unseen, before."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from redis import Redis
from rq.job import Job

from connector.cli.dev.embedded_redis import EmbeddedRedis
from connector.core import deadletters
from connector.core.jobspec import JobSerializer, job_id
from connector.web.app import create_app
from connector.web.ops.metrics import collect
from tests.support.helpers import make_settings, push
from tests.support.samples import CUSTOMER, push_of
from tests.support.standins import Reply, StandIn
from workers.run.dyno import build_runner
from workers.translate.mapping import DEFAULT_MAPPING_PATH


def nested(depth: int) -> Any:
    """A value nesting objects ``depth`` levels deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def with_data(event_id: str, data: Any, kind: str = "temperature", **changes: Any) -> dict[str, Any]:
    doc = push_of(kind, event_id=event_id, data=data)
    doc.update(changes)
    return doc


def temperature(value: Any = 21.5, **fields: Any) -> dict[str, Any]:
    at = "2024-05-29T10:34:03.970415Z"
    inner = {"value": value, "updateTime": at, "samples": [{"value": value, "sampleTime": at}], "isBackfilled": False}
    inner.update(fields)
    return {"temperature": inner}


ACCEPTED = {
    # Nesting at the limit: body, event, data and 29 levels below = 32.
    "deepest-accepted": with_data("deep32", {**temperature(), "extra": nested(29)}),
    # Integers beyond 64 bits: read as floats by the receiver's parser, and now by the worker's.
    "int-over-2**64": with_data("bigint", temperature(18446744073709551617)),
    "negative-int-under-2**63": with_data("negint", temperature(-9223372036854775809)),
    # eventIds no HTTP header can carry as they are.
    "eventId-with-CRLF": push_of("temperature", event_id="line1\r\nIdempotency-Key: forged"),
    "eventId-not-latin-1": push_of("temperature", event_id="温度-😀-Ω"),
    "eventId-with-percent": push_of("temperature", event_id="100%25"),
    # Shapes the translators do not expect.
    "value-is-text": with_data("textval", temperature("hot")),
    "samples-not-a-list": with_data("badsamples", temperature(samples=5)),
    "sample-is-null": with_data("nullsample", temperature(samples=[None])),
    "data-is-null": with_data("nulldata", None),
    "data-is-a-list": with_data("listdata", [1, 2]),
    "label-values-not-text": push_of(
        "temperature", event_id="labels", labels={"name": {"x": 1}, "moost_building": [1]}
    ),
    "bad-timestamps": with_data(
        "badtime", temperature(updateTime="2024-13-45T99:99:99Z", samples=[{"value": 1, "sampleTime": "yesterday"}])
    ),
    "target-name-not-text": with_data(
        "badtarget", temperature(), event={**push_of("temperature")["event"], "eventId": "badtarget", "targetName": 42}
    ),
}


def deep_body(event_id: str, levels: int) -> bytes:
    """A push whose ``data`` nests ``levels`` objects deep (the body itself is then levels + 2),
    written out directly: Python's own encoder stops near 1000 levels."""
    doc = json.dumps(with_data(event_id, "@data@")).encode()
    return doc.replace(b'"@data@"', b'{"x":' * levels + b"1" + b"}" * levels)


REFUSED = {
    "nested-33-deep": (json.dumps(with_data("deep33", {**temperature(), "extra": nested(30)})).encode(), "too-deep"),
    "nested-990-deep": (deep_body("deep990", 988), "too-deep"),  # the worker's json stopped here
    "nested-1023-deep": (deep_body("deep1023", 1021), "too-deep"),  # orjson stops at 1024
}


@pytest.fixture
def downstreams() -> Iterator[StandIn]:
    server = StandIn()
    server.script("/auth/token/v1", Reply(200, {"access_token": "tok", "expires_in": 86400}))
    server.script("/events/v1", Reply(201))
    server.script("/events/historical/v1", Reply(200))
    server.script("/v1/integrations/7/events", Reply(202))
    yield server
    server.close()


def test_every_push_answered_200_ends_delivered_or_as_a_dead_letter_with_a_reason(
    redis: Redis, redis_server: EmbeddedRedis, downstreams: StandIn, tmp_path: Path
):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(DEFAULT_MAPPING_PATH.read_text().replace("event_type_id = 0", "event_type_id = 31"))
    settings = make_settings(
        redis_server.url,
        destinations=("moost", "spot"),
        moost_base_url=downstreams.url,
        moost_client_id="c",
        moost_client_secret="poison-test-secret",
        moost_customer_id=CUSTOMER,
        spot_base_url=downstreams.url,
        spot_api_key="poison-test-key",
        spot_integration_id=7,
        mapping_path=str(mapping),
        worker_threads=4,
    )
    client = create_app(settings, configure_logs=False).test_client()
    for name, (body, reason) in REFUSED.items():
        answer = push(client, body)
        assert (answer.status_code, answer.get_json()["error"]) == (400, reason), name
    event_ids = []
    for name, doc in ACCEPTED.items():
        answer = push(client, json.dumps(copy.deepcopy(doc)).encode())
        assert answer.status_code == 200, (name, answer.get_json())
        event_ids.append(doc["event"]["eventId"])

    assert build_runner(settings, burst=True).run() == 0

    jobs = collect(redis, queue_name="dt-forward", destinations=settings.destinations, now=time.time()).jobs
    assert jobs.created == 2 * len(ACCEPTED)
    assert (jobs.pending, jobs.failed, jobs.unaccounted) == (0, 0, 0)  # nothing left in RQ, nothing lost
    letters = {letter.key: letter for letter in deadletters.list_dead(redis)}
    outcomes = {}
    for event_id in event_ids:
        for destination in settings.destinations:
            key = job_id(destination, event_id)
            job = Job.fetch(key, connection=redis, serializer=JobSerializer)
            assert job.get_status() == "finished", key
            result = job.latest_result()
            assert result is not None
            outcome = str(result.return_value)
            outcomes[key] = outcome
            assert outcome == "delivered" or outcome.startswith(("skipped:", "dead-letter:")), (key, outcome)
            if outcome.startswith("dead-letter:"):
                assert letters[key].reason == outcome.removeprefix("dead-letter:")
    print("\n".join(f"{key!r}: {outcome}" for key, outcome in sorted(outcomes.items())))
    keys = [seen.headers["Idempotency-Key"] for seen in downstreams.requests if "Idempotency-Key" in seen.headers]
    # The header-hostile ids were delivered, under keys of printable ASCII that decode to the id.
    for event_id in ("line1\r\nIdempotency-Key: forged", "温度-😀-Ω", "100%25"):
        assert outcomes[job_id("moost", event_id)] == "delivered"
        assert event_id in {unquote(k) for k in keys}
    assert all(k.isascii() and k.isprintable() for k in keys)
    # Integers beyond 64 bits reached MOOST as numbers.
    big = [
        s.json() for s in downstreams.requests if s.path == "/events/v1" and s.headers["Idempotency-Key"] == "bigint"
    ]
    assert big and big[0]["value"] == pytest.approx(1.8446744073709552e19)
