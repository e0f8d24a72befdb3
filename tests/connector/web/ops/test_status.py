"""The status page's pure rendering: escaping, stuck-queue marking, replay forms."""

from __future__ import annotations

from collections import Counter

from connector.web.ops.metrics import Snapshot
from connector.web.ops.status import StatusData, render_status, replay_token

NOW = 1_790_000_000.0


def page(**changes: object) -> str:
    snap = Snapshot(pushes={"accepted": 3}, queue_depth=2, oldest_queued_age_s=900.0,
                    health={"moost": {"last_ok": NOW - 60, "last_error": NOW - 5}})  # fmt: skip
    data = StatusData(
        snapshot=snap,
        per_minute={"moost": [0] * 58 + [4, 8]},
        devices={"<script>alert(1)</script>": {"name": '"><img src=x>', "eventType": "touch", "at": NOW - 3}},
        failures=Counter({("moost", "http-400<b>"): 2}),
    )
    options: dict[str, object] = {"destinations": ["moost"], "now": NOW, "replay_form": None, **changes}
    return render_status(data, **options)  # type: ignore[arg-type]


def test_everything_from_devices_and_downstreams_is_escaped():
    html = page(replay_form=replay_token("t"))
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "http-400&lt;b&gt;" in html


def test_a_stuck_queue_and_a_failing_destination_are_marked():
    html = page()
    assert "id=queue-age class=bad>15 min" in html
    assert "<td class=bad>moost</td>" in html  # last failure after last success
    assert "2.4/min" in html  # deliveries over the last 5 minutes: (4 + 8) / 5
    assert "Set METRICS_TOKEN to replay" in html and "<form" not in html


def test_replay_forms_carry_the_derived_token_not_the_token():
    html = page(replay_form=replay_token("secret-token"))
    assert html.count("<form") == 1 and replay_token("secret-token") in html and "secret-token'" not in html
