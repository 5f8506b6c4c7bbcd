"""Progress of a running sync: per resource, pages, records, rate and time left, every few seconds.

A long sync otherwise shows a step start and then silence. The counts come from the ledger the
paginator and the record gate fill; this thread only reads them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from crm_assets.source.ledger import ResourceLedger, SyncLedger


def describe(ledger: ResourceLedger, elapsed_s: float) -> str:
    """One resource's progress: `contact: 12 pages, 1,200 of 50,000 records, 950/s, ~51 s left`."""
    pages, received = len(ledger.totals), ledger.received
    total = ledger.totals[-1] if ledger.totals else None
    rate = received / elapsed_s if elapsed_s > 0 else 0.0
    line = f"{ledger.resource}: {pages} pages, {received:,}"
    line += f" of {total:,} records" if total is not None else " records"
    line += f", {rate:,.0f}/s"
    if total is not None and received >= total:
        return line + ", all received"
    if total is not None and rate > 0:
        line += f", ~{(total - received) / rate:,.0f} s left"
    return line


class ProgressReporter:
    """Logs every `interval_s` while the block runs, and once at its end."""

    def __init__(
        self,
        ledger: SyncLedger,
        log: Callable[[str], None],
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.log, self.interval_s, self.clock = ledger, log, interval_s, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crm-progress", daemon=True)
        self._started = clock()

    def report(self) -> None:
        elapsed = self.clock() - self._started
        started = [ledger for ledger in self.ledger.resources() if ledger.totals]
        lines = [describe(ledger, elapsed) for ledger in started] or ["waiting for first pages"]
        self.log(f"sync progress after {elapsed:,.0f} s: " + "; ".join(lines))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()

    def __enter__(self) -> ProgressReporter:
        self._started = self.clock()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self.report()
