"""Shared metrics: counted in Redis by every process, rendered for Prometheus at /metrics."""

from __future__ import annotations

import base64
import re

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis

from connector.core.keys import LATENCY_BUCKETS_S
from connector.core.keys import latency_field as bucket_for
from connector.web.app import create_app
from connector.web.ops.metrics import Snapshot, render
from connector.web.ops.views import authorised
from tests.support.helpers import dt_body, make_settings, push
from tests.support.servers import gunicorn, post

SAMPLE = re.compile(r'^dt_connector_[a-z_]+(\{([a-z_]+="[^"\\]*(\\.[^"\\]*)*",?)+\})? -?[0-9.e+]+$')


class Samples(dict[str, float]):
    """Samples by 'name{labels}', whatever order the labels are written in (Prometheus ignores it)."""

    def __getitem__(self, key: str) -> float:
        return super().__getitem__(canonical(key))


def canonical(key: str) -> str:
    name, _, labels = key.partition("{")
    if not labels:
        return name
    pairs = re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', labels)
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs)) + "}"


def metrics_of(text: str) -> Samples:
    """Sample lines as {'name{labels}': value}, checking each line's syntax."""
    samples = Samples()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP dt_connector_", "# TYPE dt_connector_")), line
            continue
        assert SAMPLE.match(line), line
        key, _, value = line.rpartition(" ")
        samples[canonical(key)] = float(value)
    return samples


def test_latency_buckets():
    assert bucket_for(0.05) == "0.1" and bucket_for(0.1) == "0.1" and bucket_for(0.11) == "0.25"
    assert bucket_for(3601) == "14400" and bucket_for(10**6) == "+Inf"
    assert len(LATENCY_BUCKETS_S) == len(set(LATENCY_BUCKETS_S))


def test_render_is_valid_exposition_with_a_cumulative_histogram():
    snap = Snapshot(
        pushes={"accepted": 5, "duplicate": 2, "rejected:401:signature-invalid": 3, "rejected:400:not-json": 1},
        deliveries={"moost": {"delivered": 4, "retried": 1}},
        skipped={"moost": {'odd "reason"': 2}},
        latency={"moost": {"0.1": 1.0, "1": 2.0, "+Inf": 1.0, "sum": 9000.5}},
        health={"moost": {"last_ok": 1700000000.5}},
        queue_depth=7,
        oldest_queued_age_s=12.25,
    )
    samples = metrics_of(render(snap, destinations=["moost"]))
    assert samples["dt_connector_pushes_received_total"] == 11
    assert samples["dt_connector_pushes_verified_total"] == 8  # accepted + duplicate + signed-but-malformed
    assert samples['dt_connector_pushes_rejected_total{status="401",reason="signature-invalid"}'] == 3
    assert samples['dt_connector_skipped_total{destination="moost",reason="odd \\"reason\\""}'] == 2
    bucket = 'dt_connector_delivery_latency_seconds_bucket{destination="moost",le="%s"}'
    assert [samples[bucket % le] for le in ("0.1", "0.5", "1", "43200", "+Inf")] == [1, 1, 3, 3, 4]
    assert samples['dt_connector_delivery_latency_seconds_count{destination="moost"}'] == 4
    assert samples['dt_connector_oldest_queued_age_seconds{queue="dt-forward"}'] == 12.25
    assert samples['dt_connector_deliveries_total{destination="moost",outcome="dead_lettered"}'] == 0


def test_pushes_are_counted_by_outcome_and_reason(client: FlaskClient, redis: Redis):
    for event_id in ("m1", "m2", "m1"):
        push(client, dt_body(event_id=event_id))
    push(client, dt_body(event_id="m3"), "")  # unsigned
    push(client, b"not json")
    samples = metrics_of(client.get("/metrics").get_data(as_text=True))
    assert samples['dt_connector_pushes_total{outcome="accepted"}'] == 2
    assert samples['dt_connector_pushes_total{outcome="duplicate"}'] == 1
    assert samples['dt_connector_pushes_rejected_total{status="401",reason="signature-missing"}'] == 1
    assert samples['dt_connector_pushes_rejected_total{status="400",reason="not-json"}'] == 1
    assert samples["dt_connector_pushes_received_total"] == 5
    assert samples["dt_connector_pushes_verified_total"] == 4
    assert samples['dt_connector_queue_depth{queue="dt-forward"}'] == 2
    assert 0 <= samples['dt_connector_oldest_queued_age_seconds{queue="dt-forward"}'] < 60


def test_metrics_need_the_token_when_one_is_set(redis: Redis, redis_server):
    token = "metrics-token-0123456789-test-only-value"
    client = create_app(make_settings(redis_server.url, metrics_token=token), configure_logs=False).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert token not in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize(
    ("header", "ok"),
    [("", False), ("Bearer t0k", True), ("bearer t0k", True), ("Bearer t0", False), ("Basic !!!", False),
     ("Basic " + base64.b64encode(b"u:t0k").decode(), True), ("Token t0k", False)],
)  # fmt: skip
def test_authorised(header: str, ok: bool):
    assert authorised(header, "t0k") is ok
    assert authorised(header, "") is True  # no token configured: open


@pytest.mark.slow
def test_counts_are_shared_by_every_web_process(redis: Redis, redis_server):
    with gunicorn(redis_server.url, WEB_CONCURRENCY="3") as (base, _):
        for n in range(30):
            assert post(base, dt_body(event_id=f"shared{n}")).status_code == 200
        text = requests.get(f"{base}/metrics", timeout=5).text
    assert metrics_of(text)['dt_connector_pushes_total{outcome="accepted"}'] == 30
