"""Tests for workers.deliver.send: outcome rules, retry schedule, and the Sender against a stand-in."""

from __future__ import annotations

import email.utils
import time

import pytest
from requests.structures import CaseInsensitiveDict

from tests.support.standins import Reply, StandIn
from workers.deliver.send import (
    DEFAULT_SCHEDULE_S,
    EXCERPT_CHARS,
    MAX_RETRY_AFTER_S,
    Sender,
    classify,
    parse_retry_after,
    retry_delay_s,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (200, "delivered", "ok"),
        (201, "delivered", "ok"),
        (202, "delivered", "ok"),
        (301, "failed", "unexpected-redirect"),
        (400, "failed", "http-400"),
        (401, "failed", "http-401"),
        (404, "failed", "http-404"),
        (422, "failed", "http-422"),
        (408, "retry", "http-408"),
        (429, "retry", "http-429"),
        (500, "retry", "http-500"),
        (503, "retry", "http-503"),
    ],
)
def test_classify(status, kind, reason):
    outcome = classify(status, CaseInsensitiveDict(), "x" * 2000, now=NOW)
    assert (outcome.kind, outcome.reason, outcome.status) == (kind, reason, status)
    assert len(outcome.excerpt) <= 500


def test_retry_after_header_any_case():
    outcome = classify(429, CaseInsensitiveDict({"retry-after": "17"}), "", now=NOW)
    assert outcome.retry_after_s == 17


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), ("soon", None), ("", None), (None, None), ("-5", None), ("²", None)],
)
def test_parse_retry_after_seconds(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_parse_retry_after_http_date():
    later = email.utils.formatdate(NOW + 90, usegmt=True)
    earlier = email.utils.formatdate(NOW - 90, usegmt=True)
    assert parse_retry_after(later, now=NOW) == pytest.approx(90.0)
    assert parse_retry_after(earlier, now=NOW) == 0.0


def test_schedule_spans_more_than_twelve_hours_and_grows():
    assert sum(DEFAULT_SCHEDULE_S) > 12 * 3600
    assert list(DEFAULT_SCHEDULE_S) == sorted(DEFAULT_SCHEDULE_S)


def test_retry_delay_jitter_bounds_and_exhaustion():
    assert retry_delay_s(1, rand=0.0) == pytest.approx(8.0)
    assert retry_delay_s(1, rand=0.999999) == pytest.approx(12.0, rel=1e-4)
    assert retry_delay_s(1, rand=0.5) == pytest.approx(10.0)
    assert retry_delay_s(len(DEFAULT_SCHEDULE_S) + 1, rand=0.5) is None
    assert retry_delay_s(0, rand=0.5) is None


def test_retry_after_is_honoured_but_capped():
    assert retry_delay_s(1, rand=0.5, retry_after_s=90) == 90
    assert retry_delay_s(1, rand=0.5, retry_after_s=5) == pytest.approx(10.0)  # never sooner than scheduled
    assert retry_delay_s(1, rand=0.5, retry_after_s=10**6) == MAX_RETRY_AFTER_S


def test_sender_posts_json_with_idempotency_key_over_one_connection(standin: StandIn):
    standin.script("/events/v1", Reply(201))
    sender = Sender()
    for n in range(3):
        outcome = sender.post_json(
            f"{standin.url}/events/v1",
            {"n": n},
            headers={"Authorization": "Bearer t"},
            idempotency_key=f"e{n}",
            now=NOW,
        )
        assert outcome.kind == "delivered"
    assert [seen.json() for seen in standin.requests] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [seen.headers["Idempotency-Key"] for seen in standin.requests] == ["e0", "e1", "e2"]
    assert len({seen.client_port for seen in standin.requests}) == 1  # keep-alive reused


def test_sender_times_out_on_a_stalled_response(standin: StandIn):
    standin.script("/slow", Reply(200, delay_s=2.0))
    started = time.monotonic()
    outcome = Sender(timeout_s=(1.0, 0.3)).post_json(f"{standin.url}/slow", {}, now=NOW)
    assert outcome.kind == "retry" and outcome.reason == "timeout"
    assert time.monotonic() - started < 1.5


def test_sender_connection_refused_is_a_retry():
    from connector.cli.dev.embedded_redis import free_port

    outcome = Sender(timeout_s=(0.5, 0.5)).post_json(f"http://127.0.0.1:{free_port()}/x", {}, now=NOW)
    assert (outcome.kind, outcome.reason) == ("retry", "connection-error")


def test_sender_429_then_500_then_success(standin: StandIn):
    standin.script(
        "/e",
        Reply(429, {"error": "slow down"}, headers={"Retry-After": "30"}),
        Reply(500, {"error": "boom"}),
        Reply(202),
    )
    sender = Sender()
    first = sender.post_json(f"{standin.url}/e", {}, now=NOW)
    second = sender.post_json(f"{standin.url}/e", {}, now=NOW)
    third = sender.post_json(f"{standin.url}/e", {}, now=NOW)
    assert (first.kind, first.retry_after_s, "slow down" in first.excerpt) == ("retry", 30.0, True)
    assert (second.kind, second.reason) == ("retry", "http-500")
    assert third.kind == "delivered"


def test_sender_does_not_follow_redirects(standin: StandIn):
    standin.script("/moved", Reply(307, {"error": "moved"}, headers={"Location": "/elsewhere"}))
    outcome = Sender().post_json(f"{standin.url}/moved", {"n": 1}, now=NOW)
    assert (outcome.kind, outcome.reason, outcome.status) == ("failed", "unexpected-redirect", 307)
    assert [seen.path for seen in standin.requests] == ["/moved"]


def test_sender_keeps_an_excerpt_of_an_error_even_when_it_is_not_utf8(standin: StandIn):
    standin.script("/bad", Reply(400, body=b"\xff\xfe bad field " + b"x" * 5000))
    outcome = Sender().post_json(f"{standin.url}/bad", {}, now=NOW)
    assert outcome.kind == "failed" and "bad field" in outcome.excerpt
    assert len(outcome.excerpt) <= EXCERPT_CHARS
