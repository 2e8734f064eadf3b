"""Limits with no I/O (PROTOCOL section 8): a token bucket for the frame rate, the same buckets
per key (a user: the memory engine's publish quotas), and a sliding window that counts errors."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


def utf8_size(text: str) -> int:
    """The length of `text` in UTF-8 bytes; an ASCII text (the common case) is not encoded to know it."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class TokenBucket:
    """Allow `rate` units per second (frames, or bytes) with bursts of `burst`.

    An amount larger than the whole burst (a publication over one second's worth of bytes)
    is let through from a full bucket and leaves it owing, rather than being refused for ever.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self, amount: float = 1) -> bool:
        """Spend `amount` tokens; False, spending nothing, when there are not enough (over the rate)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= min(amount, self.burst):
            self.tokens -= amount
            return True
        return False

    def wait(self, amount: float = 1) -> float:
        """Seconds until `take(amount)` would succeed (0 when it would now)."""
        tokens = min(self.burst, self.tokens + (self.clock() - self.stamp) * self.rate)
        return max(0.0, (min(amount, self.burst) - tokens) / self.rate)

    def full(self) -> bool:
        """True when the bucket has refilled completely: it is as good as a new one."""
        return self.tokens + (self.clock() - self.stamp) * self.rate >= self.burst


class KeyedBuckets:
    """One `TokenBucket` per key (a user), each of `rate` with one second's worth as its burst (or `burst`).

    For limits that outlive a connection (the memory engine's publish quotas and connects). The table holds at
    most `max_keys` buckets: when it is full, buckets that refilled are forgotten (a new one
    is the same), then the oldest ones. Thread-safe: sync views may run in several threads.
    """

    __slots__ = ("buckets", "max_keys", "clock", "lock")

    def __init__(self, max_keys: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets: dict[object, TokenBucket] = {}
        self.max_keys = max_keys
        self.clock = clock
        self.lock = threading.Lock()

    def take(self, key: object, amount: float, *, rate: float, burst: float | None = None) -> bool:
        """Spend `amount` from `key`'s bucket (made on first use, or anew when `rate` or `burst` changed)."""
        burst = rate if burst is None else burst
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                if bucket is None and len(self.buckets) >= self.max_keys:
                    self._make_room()
                bucket = self.buckets[key] = TokenBucket(rate, burst, self.clock)
            return bucket.take(amount)

    def wait(self, key: object, amount: float) -> float:
        """Seconds until `key`'s bucket holds `amount` (0 for a key without a bucket: it would be full)."""
        with self.lock:
            bucket = self.buckets.get(key)
            return 0.0 if bucket is None else bucket.wait(amount)

    def _make_room(self) -> None:
        for key in [key for key, bucket in self.buckets.items() if bucket.full()]:
            del self.buckets[key]
        while len(self.buckets) >= self.max_keys:
            del self.buckets[next(iter(self.buckets))]


class ErrorWindow:
    """Count events in the last `window` seconds; `add()` says when there are more than `limit`."""

    __slots__ = ("limit", "window", "times", "clock")

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        # Made at the first event: most sockets never send a bad frame, and an empty deque is ~600 bytes.
        self.times: deque[float] | None = None
        self.clock = clock

    def add(self) -> bool:
        """Record one event; True when the window now holds more than `limit`."""
        now = self.clock()
        times = self.times
        if times is None:
            times = self.times = deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        # bounded: never keep more than limit + 1 stamps
        while len(times) > self.limit + 1:
            times.popleft()
        return len(times) > self.limit
