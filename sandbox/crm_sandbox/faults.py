"""What the sandbox does to requests besides answering: latency, rate limits, injected faults."""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

TRANSIENT_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)


@dataclass
class FaultSettings:
    """Knobs a test or `crm-sandbox` flag turns; all off by default."""

    latency_ms: float = 0.0
    rate_limit_per_s: float | None = None
    rate_limit_burst: int = 10
    transient_fault_rate: float = 0.0
    retry_after_s: int = 1
    max_page_size: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Fault:
    """A scripted answer that replaces the normal one."""

    status: int
    retry_after_s: int | None = None


@dataclass(frozen=True)
class RequestRecord:
    """What the sandbox saw of a request (never the key), for tests to count and time."""

    at: float
    resource: str
    offset: int | None
    limit: int | None
    status: int
    updated_since: str | None = None


class TokenBucket:
    """Classic token bucket: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is due."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


@dataclass
class FaultPlan:
    """Decides, per request, whether to answer normally or with a fault; keeps the request log."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    log: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: dict[tuple[str, int | None], deque[Fault]] = {}
        self._skips: list[tuple[str, int]] = []
        self._shorts: dict[tuple[str, int], int] = {}
        self._bad: dict[tuple[str, int], deque[str]] = {}
        self._in_flight = 0
        self.max_in_flight = 0
        # Called with (resource, offset) as each listing request arrives: tests change data here.
        self.on_request: Callable[[str, int], None] | None = None
        self._rng = random.Random(self.settings.seed)
        rate = self.settings.rate_limit_per_s
        self._bucket = TokenBucket(rate, self.settings.rate_limit_burst) if rate else None

    def inject(
        self,
        resource: str,
        statuses: list[int],
        offset: int | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        """The next requests for `resource` (at `offset`, or any offset) answer these statuses."""
        with self._lock:
            queue = self._scripted.setdefault((resource, offset), deque())
            queue.extend(Fault(status, retry_after_s) for status in statuses)

    def skip_page(self, resource: str, offset: int) -> None:
        """The next request at `offset` gets the page after it, still with the full total.

        A buggy or racing API loses records this way; only reconciliation can notice.
        """
        with self._lock:
            self._skips.append((resource, offset))

    def short_page(self, resource: str, offset: int, size: int) -> None:
        """The next request at `offset` gets at most `size` records (a cap that moved mid-sync)."""
        with self._lock:
            self._shorts[(resource, offset)] = size

    def serve_bad(self, resource: str, offset: int, kind: str, times: int = 1) -> None:
        """The next `times` requests at `offset` get a bad answer of `kind` (see bad_answers)."""
        with self._lock:
            self._bad.setdefault((resource, offset), deque()).extend([kind] * times)

    def take_bad(self, resource: str, offset: int) -> str | None:
        with self._lock:
            queue = self._bad.get((resource, offset))
            return queue.popleft() if queue else None

    def take_short(self, resource: str, offset: int) -> int:
        with self._lock:
            return self._shorts.pop((resource, offset), 2**31)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Counts requests being answered at once; `max_in_flight` keeps the peak."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def take_skip(self, resource: str, offset: int) -> bool:
        with self._lock:
            if (resource, offset) in self._skips:
                self._skips.remove((resource, offset))
                return True
            return False

    def decide(self, resource: str, offset: int) -> Fault | None:
        """The fault this request gets, if any: scripted first, then the rate limit, then chance."""
        with self._lock:
            for key in ((resource, offset), (resource, None)):
                if self._scripted.get(key):
                    return self._scripted[key].popleft()
            if self._bucket is not None:
                wait = self._bucket.take()
                if wait:
                    return Fault(429, max(1, math.ceil(wait)))
            if self._rng.random() < self.settings.transient_fault_rate:
                status = self._rng.choice(TRANSIENT_STATUSES)
                return Fault(status, self.settings.retry_after_s if status == 429 else None)
        return None

    def record(
        self,
        resource: str,
        offset: int | None,
        limit: int | None,
        status: int,
        updated_since: str | None = None,
    ) -> None:
        with self._lock:
            entry = RequestRecord(time.monotonic(), resource, offset, limit, status, updated_since)
            self.log.append(entry)

    def status_counts(self) -> dict[str, int]:
        """Listing requests answered so far, by HTTP status."""
        with self._lock:
            counts = Counter(str(r.status) for r in self.log)
        return dict(counts)

    def requests_for(self, resource: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if r.resource == resource]
