"""``workers.jobs.decide``: the pure step between a delivery's outcome and what the job does."""

from __future__ import annotations

from workers.deliver.send import Outcome
from workers.jobs import decide
from workers.translate.payloads import Skipped

SCHEDULE = (10, 60, 300)


def test_a_delivery_is_done():
    decision = decide(Outcome("delivered", "ok", 202), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert (decision.verdict, decision.result, decision.status) == ("delivered", "delivered", 202)


def test_a_skip_keeps_its_reason_and_sentence():
    decision = decide(Skipped("not-mapped", "spot does not take touch"), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "skipped:not-mapped"
    assert decision.detail == "spot does not take touch"


def test_a_transient_failure_waits_its_turn_in_the_schedule_with_jitter():
    middle = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.5)
    assert (middle.verdict, middle.attempt, middle.delay_s) == ("retry", 2, 60)
    low = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.0)
    high = decide(Outcome("retry", "http-503", 503), attempt=2, schedule=SCHEDULE, rand=0.999)
    assert low.delay_s is not None and high.delay_s is not None
    assert low.delay_s < 60 < high.delay_s


def test_retry_after_lengthens_the_wait_but_never_shortens_it():
    longer = decide(Outcome("retry", "http-429", 429, retry_after_s=45), attempt=1, schedule=SCHEDULE, rand=0.5)
    shorter = decide(Outcome("retry", "http-429", 429, retry_after_s=1), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert longer.delay_s == 45
    assert shorter.delay_s == 10


def test_the_schedule_used_up_is_a_dead_letter_naming_the_last_failure():
    decision = decide(Outcome("retry", "http-503", 503, excerpt="busy"), attempt=4, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "dead-letter:retries-exhausted:http-503"
    assert (decision.status, decision.excerpt) == (503, "busy")


def test_a_permanent_failure_is_a_dead_letter_at_once():
    decision = decide(Outcome("failed", "http-400", 400, excerpt="bad"), attempt=1, schedule=SCHEDULE, rand=0.5)
    assert decision.result == "dead-letter:http-400"
    assert decision.delay_s is None
