"""``connector.web.ops.throttle``: sliding windows of wrong operator tokens."""

from __future__ import annotations

from connector.web.ops.throttle import FailedAttempts


def test_a_client_waits_once_it_used_its_slots_until_the_oldest_expires():
    throttle = FailedAttempts(per_client=3, overall=100, window_s=60)
    for second in (0, 10, 20):
        assert throttle.wait_s("a", second) == 0
        throttle.failed("a", second)
    assert throttle.wait_s("a", 30) == 30  # the slot used at 0 frees at 60
    assert throttle.wait_s("b", 30) == 0  # others are not held back
    assert throttle.wait_s("a", 60) == 0


def test_everyone_waits_when_the_process_saw_too_many_wrong_tokens():
    throttle = FailedAttempts(per_client=10, overall=4, window_s=60)
    for n in range(4):
        throttle.failed(f"client-{n}", n)
    assert throttle.wait_s("someone-new", 5) == 55


def test_memory_is_bounded_by_forgetting_the_least_recent_client():
    throttle = FailedAttempts(per_client=1, overall=1000, window_s=60, max_clients=2)
    throttle.failed("first", 0)
    throttle.failed("second", 1)
    throttle.failed("third", 2)
    assert throttle.wait_s("first", 3) == 0  # forgotten
    assert throttle.wait_s("third", 3) == 59
