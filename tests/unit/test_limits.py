"""Token bucket and error window, driven by a fake clock (pure logic, no I/O)."""

import pytest

from realtime.limits import ErrorWindow, TokenBucket

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.1  # one token back
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_window_counts_events_within_the_window():
    clock = Clock()
    window = ErrorWindow(limit=3, window=60, clock=clock)
    assert [window.add() for _ in range(3)] == [False, False, False]
    assert window.add() is True
    clock.now += 61
    assert window.add() is False
    assert len(window.times) == 1


def test_window_keeps_bounded_memory():
    window = ErrorWindow(limit=2, window=60, clock=Clock())
    for _ in range(1000):
        window.add()
    assert len(window.times) == 3
