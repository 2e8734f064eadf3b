"""Per-connection limits with no I/O: a token bucket for the frame rate and a
sliding window that counts errors (PROTOCOL section 8)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class TokenBucket:
    """Allow `rate` events per second with bursts of `burst`."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the event is over the rate)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ErrorWindow:
    """Count events in the last `window` seconds; `add()` says when there are more than `limit`."""

    __slots__ = ("limit", "window", "times", "clock")

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()
        self.clock = clock

    def add(self) -> bool:
        """Record one event; True when the window now holds more than `limit`."""
        now = self.clock()
        times = self.times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        # bounded: never keep more than limit + 1 stamps
        while len(times) > self.limit + 1:
            times.popleft()
        return len(times) > self.limit
