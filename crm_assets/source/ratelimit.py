"""A client-side rate limit shared by every request of a sync, so a sync stays under the API's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket: `rate_per_s` requests a second on average, `burst` at once at most.

    `acquire` blocks the calling thread until its request may go; thread-safe, so concurrent
    page fetches share one budget.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate, self.burst = rate_per_s, max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = clock()
        self.waited_s = 0.0

    def acquire(self) -> None:
        with self._lock:  # reserve a token now; wait for it outside the lock
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited_s += wait
        if wait > 0:
            self._sleep(wait)
