"""Token bucket and error window, driven by a fake clock (pure logic, no I/O)."""

import pytest

from realtime.core.limits import ErrorWindow, KeyedBuckets, TokenBucket, utf8_size

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


def test_bucket_counts_amounts_such_as_bytes():
    clock = Clock()
    bucket = TokenBucket(rate=1000, burst=1000, clock=clock)  # 1000 bytes a second, one second's worth at once
    assert bucket.take(600) is True
    assert bucket.take(500) is False  # over the rate: refused, and nothing is spent
    assert bucket.take(400) is True
    clock.now += 0.25
    assert bucket.take(300) is False
    assert bucket.take(250) is True


def test_an_amount_over_the_burst_passes_only_from_a_full_bucket():
    """A publication larger than one second's worth is not refused for ever: it takes a full bucket, and owes."""
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=100, clock=clock)
    assert bucket.take(250) is True
    clock.now += 1.0  # 100 back: still owes 50
    assert bucket.take(1) is False
    clock.now += 1.5  # full again
    assert bucket.take(1) is True


def test_utf8_size_counts_bytes_not_characters():
    assert utf8_size("abc") == 3
    assert utf8_size('{"t":"ünï"}') == len('{"t":"ünï"}'.encode())
    assert utf8_size("\ud800") == 3  # a lone surrogate (JSON allows it) is measured, not an error


def test_buckets_are_per_key():
    clock = Clock()
    buckets = KeyedBuckets(clock=clock)
    assert buckets.take(7, 900, rate=1000) is True
    assert buckets.take(7, 200, rate=1000) is False
    assert buckets.take(8, 900, rate=1000) is True  # another key's bucket is its own
    assert buckets.take(7, 200, rate=5000) is True  # a new rate (the settings changed): a new bucket


def test_keyed_buckets_keep_bounded_memory():
    clock = Clock()
    buckets = KeyedBuckets(max_keys=10, clock=clock)
    for key in range(10):
        buckets.take(key, 1000, rate=1000)  # each one empty now
    assert buckets.take(10, 1, rate=1000) is True  # over max_keys: the bucket is made all the same
    assert len(buckets.buckets) <= 10
    clock.now += 2  # every bucket full again, as good as new: forgotten when the table is full
    for key in range(100, 150):
        buckets.take(key, 1000, rate=1000)
    assert len(buckets.buckets) <= 10
    assert buckets.take(149, 1, rate=1000) is False  # the newest ones are kept (and still empty)


def test_wait_says_when_an_amount_fits_again():
    now = [0.0]
    bucket = TokenBucket(100, 100, clock=lambda: now[0])
    assert bucket.wait(60) == 0
    assert bucket.take(60) and not bucket.take(60)
    assert bucket.wait(60) == pytest.approx(0.2)  # 40 left, 20 more at 100 per second
    now[0] = 0.2
    assert bucket.wait(60) == 0 and bucket.take(60)
    assert bucket.wait(500) == pytest.approx(1.0)  # over the burst: from a full bucket


def test_an_error_window_holds_nothing_until_its_first_event():
    window = ErrorWindow(limit=2, window=10, clock=lambda: 0.0)
    assert window.times is None  # an idle socket's windows cost no deque
    assert not window.add() and len(window.times) == 1
