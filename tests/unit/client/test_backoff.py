"""Backoff and close-code policy as pure functions (PROTOCOL §7, §10)."""

import pytest
from realtime_client import backoff_delay, should_reconnect
from realtime_client.backoff import close_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 20.0), (30, 20.0), (10_000, 20.0), (-3, 0.5)],
)
def test_ceiling_doubles_from_min_to_max(attempt, expected):
    assert backoff_delay(attempt, 0.5, 20.0, lambda: 1.0) == expected


def test_full_jitter_scales_the_ceiling_by_random():
    assert backoff_delay(3, 0.5, 20.0, lambda: 0.0) == 0.0
    assert backoff_delay(3, 0.5, 20.0, lambda: 0.25) == 1.0
    assert backoff_delay(10, 0.5, 20.0, lambda: 0.5) == 10.0


def test_delays_stay_within_bounds_for_real_random():
    import random

    rng = random.Random(7)
    for attempt in range(50):
        delay = backoff_delay(attempt, 0.5, 20.0, rng.random)
        assert 0.0 <= delay < min(20.0, 0.5 * 2**attempt)


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1000, False),
        (1001, True),
        (1005, True),
        (1006, True),
        (1011, True),
        (3000, True),
        (3999, True),
        (4000, True),
        (4004, True),
        (4009, True),
        (4499, True),
        (4500, False),
        (4501, False),
        (4509, False),
        (4999, False),
        (None, True),
    ],
)
def test_close_code_classes(code, reconnect):
    assert should_reconnect(code) is reconnect


def test_close_names():
    assert close_name(1006) == "abnormal"
    assert close_name(4509) == "session_taken_over"
    assert close_name(4321) == ""
    assert close_name(None) == ""
