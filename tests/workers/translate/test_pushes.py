"""Reading pushes for translation: times in each destination's format; the pure modules do no I/O."""

from __future__ import annotations

import pytest

from workers.moost import events as moost_events
from workers.spot import events as spot_events
from workers.translate import mapping as mapping_module
from workers.translate import pushes as pushes_module
from workers.translate import readings as readings_module
from workers.translate.pushes import InvalidEvent, epoch_seconds, rfc3339_millis

TS = 1716978843  # 2024-05-29T10:34:03Z


class TestTimes:
    @pytest.mark.parametrize(
        ("text", "seconds", "millis"),
        [
            ("2024-05-29T10:34:03.970415Z", TS, "2024-05-29T10:34:03.970Z"),
            ("2024-05-29T10:34:03Z", TS, "2024-05-29T10:34:03.000Z"),
            ("2024-05-29T12:34:03.9999999+02:00", TS, "2024-05-29T10:34:03.999Z"),
            ("2024-05-29T10:34:03.1z", TS, "2024-05-29T10:34:03.100Z"),
        ],
    )
    def test_conversions(self, text, seconds, millis):
        assert epoch_seconds(text) == seconds
        assert rfc3339_millis(text) == millis

    @pytest.mark.parametrize("text", ["", "2024-05-29", "2024-13-01T00:00:00Z", "1716978843", "2024-05-29T10:34:03"])
    def test_rejects_non_rfc3339(self, text):
        with pytest.raises(InvalidEvent):
            epoch_seconds(text)


def test_pure_modules_do_no_io():
    for module in (readings_module, pushes_module, mapping_module, moost_events, spot_events):
        names = vars(module)
        for forbidden in ("flask", "redis", "requests", "time", "Redis", "socket"):
            assert forbidden not in names, f"{module.__name__} imports {forbidden}"
