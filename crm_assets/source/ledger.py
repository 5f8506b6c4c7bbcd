"""What one sync saw of each CRM resource, and whether that adds up to the API's `total`."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rejection:
    """A record kept out of its table; lands in the quarantine table, never in a message."""

    resource: str
    record_id: int | None
    reason: str  # names the field and the types involved, never the value
    record: dict[str, Any]


@dataclass(frozen=True)
class Reconciliation:
    """Did a full sync receive every record the API says it has?"""

    passed: bool
    api_total: int | None
    received: int
    distinct_ids: int
    without_id: int
    reason: str


@dataclass
class ResourceLedger:
    """Counts for one resource; filled by the paginator (totals) and the record gate (records)."""

    resource: str
    totals: list[int] = field(default_factory=list)
    received: int = 0
    ids: set[int] = field(default_factory=set)
    duplicate_ids: int = 0
    without_id: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def __deepcopy__(self, memo: dict[int, Any]) -> ResourceLedger:
        # dlt deep-copies paginators and configs in places; the counts must still land here.
        return self

    def saw_total(self, total: int) -> None:
        self.totals.append(total)

    def saw_record(self, record_id: int | None) -> None:
        self.received += 1
        if record_id is None:
            self.without_id += 1
        elif record_id in self.ids:
            self.duplicate_ids += 1
        else:
            self.ids.add(record_id)

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)

    @property
    def quarantined(self) -> int:
        """Rejected records that had an id (the id-less ones are counted on their own)."""
        return sum(r.record_id is not None for r in self.rejections)

    def reconcile(self) -> Reconciliation:
        """Passes when the distinct ids (plus id-less records) equal a total that never fell.

        Offset paging skips a record for every row deleted upstream mid-sync, so a total that
        fell while we paged fails even if the final numbers agree; ids seen twice fail too.
        """
        last = self.totals[-1] if self.totals else None
        accounted = len(self.ids) + self.without_id
        problems = []
        if last is None:
            problems.append("no page was read, so the API total is unknown")
        elif accounted != last:
            idless = f" and {self.without_id} records without id" if self.without_id else ""
            problems.append(
                f"received {len(self.ids)} distinct ids{idless} but the API total is {last}"
            )
        if any(later < earlier for earlier, later in itertools.pairwise(self.totals)):
            problems.append(
                f"the API total fell from {max(self.totals)} to {min(self.totals)} during the"
                " sync; offset paging skips records when rows are deleted mid-sync"
            )
        if self.duplicate_ids:
            problems.append(
                f"{self.duplicate_ids} ids arrived twice: records shifted between pages"
            )
        problem = "; ".join(problems)
        return Reconciliation(
            passed=not problem,
            api_total=last,
            received=self.received,
            distinct_ids=len(self.ids),
            without_id=self.without_id,
            reason=problem or f"received all {last} records the API reports",
        )


class SyncLedger:
    """One `ResourceLedger` per resource for one run of the source."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, ResourceLedger] = {}

    def __getitem__(self, resource: str) -> ResourceLedger:
        with self._lock:
            return self._resources.setdefault(resource, ResourceLedger(resource))

    def rejections(self) -> list[Rejection]:
        with self._lock:
            return [r for ledger in self._resources.values() for r in ledger.rejections]
