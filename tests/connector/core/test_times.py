"""connector.core.times: one reading of times for DT, RQ, the APIs and the command line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.core.times import format_rfc3339, parse_duration, parse_rfc3339, parse_since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-29T10:34:03.970415Z", datetime(2024, 5, 29, 10, 34, 3, 970415, tzinfo=UTC)),
        ("2024-05-29t12:34:03.1+02:00", datetime(2024, 5, 29, 10, 34, 3, 100000, tzinfo=UTC)),
        ("2024-05-29 10:34:03z", datetime(2024, 5, 29, 10, 34, 3, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),  # a leap second
    ],
)
def test_rfc3339_times_are_read_as_utc(text: str, expected: datetime):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2024-05-29", "2024-05-29T10:34:03", "2024-W22-3T10:34:03Z", "20240529T103403Z", ""])
def test_what_is_not_rfc3339_is_refused(text: str):
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_formatting_truncates_rather_than_rounds_into_the_next_second():
    at = datetime(2024, 5, 29, 10, 34, 3, 999999, tzinfo=UTC)
    assert format_rfc3339(at) == "2024-05-29T10:34:03Z"
    assert format_rfc3339(at, digits=3) == "2024-05-29T10:34:03.999Z"
    assert format_rfc3339(at.timestamp(), digits=6) == "2024-05-29T10:34:03.999999Z"


def test_durations_and_points_in_time_from_the_command_line():
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    assert parse_since("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_since("2026-11-23T00:00:00+01:00", now=0) == 1_795_388_400.0
    with pytest.raises(ValueError):
        parse_duration("yesterday")
