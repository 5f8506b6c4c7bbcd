"""What one sync saw of each CRM resource, and whether that adds up to the API's `total`."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from crm_assets.source.schema import DELETED_AT, Column

RecordId = int | str


@dataclass(frozen=True)
class Rejection:
    """A value set aside (`field` set) or a record withheld whole (`field` None).

    Lands in the quarantine table, never in a message: `reason` names the field and the types
    involved, never the value.
    """

    resource: str
    record_id: RecordId | None
    field: str | None
    reason: str
    value: Any


@dataclass(frozen=True)
class Reconciliation:
    """Did a full sync land a row for every record the API says it has?"""

    passed: bool
    api_total: int | None
    received: int
    landed: int
    withheld: int
    without_id: int
    reason: str
    mode: str = "full"

    def after_rereads(self, reasons: list[str]) -> Reconciliation:
        """The verdict of the last read, saying how often and why the resource was re-read."""
        said = f"read {len(reasons) + 1} times ({'; then '.join(reasons)})"
        return replace(self, reason=f"{self.reason}; {said}")

    def after_incremental(self, live_rows: int, api_total: int | None) -> Reconciliation:
        """An incremental sync's verdict: every changed record landed, and the table is whole.

        `api_total` is the API's unfiltered total: fewer live rows means records were missed
        (ERROR); more means deletions the next full sync will mark (fine).
        """
        problems = [] if self.passed else [self.reason]
        changed = f"{self.landed} changed records landed of {self.api_total} the filter listed"
        if api_total is None:
            problems.append("the API's unfiltered total could not be read")
        elif live_rows < api_total:
            problems.append(
                f"the table has {live_rows} live rows but the API {api_total} records: some"
                " were never listed as changed; run a full sync"
            )
        note = ""
        if api_total is not None and live_rows > api_total:
            note = f"; {live_rows - api_total} rows deleted upstream await the next full sync"
        return replace(
            self,
            passed=not problems,
            api_total=api_total,
            mode="incremental",
            reason="; ".join(problems) or f"{changed}; {live_rows} live rows{note}",
        )


@dataclass
class ResourceLedger:
    """Counts for one resource; filled by the record gate, page by page (totals, records).

    Nothing here grows with the records: ids are counted in the warehouse after the load, and
    rejections wait only until the sync streams them to `_quarantine`.
    """

    resource: str
    totals: list[int] = field(default_factory=list)
    received: int = 0
    without_id: int = 0
    # Records withheld whole, one `_quarantine` row each (`field` NULL): the id-less ones too.
    withheld: int = 0
    withheld_with_id: int = 0
    values_set_aside: int = 0
    # (field, kind) -> records: kind is "absent", "null" (declared non-null), "unfit <type>", ...
    drifts: Counter[tuple[str, str]] = field(default_factory=Counter)
    pending: list[Rejection] = field(default_factory=list)  # bound for `_quarantine`

    def saw_total(self, total: int) -> None:
        self.totals.append(total)

    def saw_record(self, record_id: RecordId | None) -> None:
        self.received += 1
        if record_id is None:
            self.without_id += 1

    def withhold(self, rejection: Rejection) -> None:
        """A whole record kept out of the table (no usable id, or strict mode)."""
        self.pending.append(rejection)
        self.withheld += 1
        if rejection.record_id is not None:
            self.withheld_with_id += 1

    def set_aside(self, rejection: Rejection) -> None:
        """One value that did not fit its column: the row loads with NULL there."""
        self.pending.append(rejection)
        self.values_set_aside += 1
        self.drifts[(rejection.field or "?", "unfit")] += 1

    def take_rejections(self) -> list[Rejection]:
        """The rejections since the last call, handed over to be written."""
        taken, self.pending = self.pending, []
        return taken

    def drift(self, field_name: str, kind: str) -> None:
        self.drifts[(field_name, kind)] += 1

    def drift_report(self, columns: Iterable[Column]) -> dict[str, str]:
        """Per field that drifted in this sync, how (never a value).

        A nullable field counts only when no record carried it; a declared non-null one for
        every record where it was null or absent; any field for values that did not fit, and
        any field, declared or not, whose values had NUL bytes removed.
        """
        with_id = self.received - self.without_id
        report = {}
        declared = [c for c in columns if c.name != DELETED_AT]
        for column in declared:
            counts = {kind: n for (name, kind), n in self.drifts.items() if name == column.name}
            parts = []
            absent = counts.pop("absent", 0)
            if absent and (not column.nullable or absent >= with_id):
                parts.append(f"absent in {absent} of {with_id}")
            if nulls := counts.pop("null", 0):
                parts.append(f"null in {nulls} of {with_id}")
            if unfit := counts.pop("unfit", 0):
                parts.append(f"{unfit} values not {column.data_type}, set aside in _quarantine")
            parts += [f"{kind} in {n} of {with_id}" for kind, n in sorted(counts.items())]
            if parts:
                report[column.name] = "; ".join(parts)
        names = {c.name for c in declared}
        for (name, kind), n in sorted(self.drifts.items()):
            if name not in names:
                report[name] = "; ".join(
                    filter(None, [report.get(name), f"{kind} in {n} of {with_id}"])
                )
        return report

    def shifted(self, landed: int) -> str | None:
        """Why this read may have skipped or repeated records because the API's list moved under
        it (None: nothing says so), so that reading the resource again can set it right.

        A record withheld whole is no such reason: a second read would withhold it again.
        """
        last = self.totals[-1] if self.totals else None
        reasons = []
        if any(later < earlier for earlier, later in itertools.pairwise(self.totals)):
            reasons.append(
                f"the API total fell from {max(self.totals)} to {min(self.totals)} during the read"
            )
        if (repeated := self.received - self.without_id - self.withheld_with_id - landed) > 0:
            reasons.append(f"{repeated} ids arrived twice")
        if not reasons and last is not None and landed < last and not self.withheld:
            reasons.append(f"{landed} distinct ids landed of the API's {last}")
        return "; ".join(reasons) or None

    def reconcile(self, landed: int) -> Reconciliation:
        """Passes when the distinct ids that landed (`landed`, counted in the warehouse) equal a
        total that never fell.

        A record withheld whole (no id, or strict mode) fails it: the table is short of the API.
        Offset paging skips a record for every row deleted upstream mid-sync, so a total that
        fell while we paged fails even if the final numbers agree; ids seen twice fail too (they
        merge into one row, so fewer rows land than records with an id arrived).
        """
        last = self.totals[-1] if self.totals else None
        problems = []
        if last is None:
            problems.append("no page was read, so the API total is unknown")
        elif landed != last or self.without_id or self.withheld_with_id:
            kept_out = [
                f"{n} {what}"
                for n, what in (
                    (self.without_id, "without id"),
                    (self.withheld_with_id, "withheld whole (see _quarantine)"),
                )
                if n
            ]
            detail = f" ({', '.join(kept_out)})" if kept_out else ""
            problems.append(
                f"{landed} distinct ids landed but the API total is {last}; received"
                f" {self.received} records{detail}"
            )
        if any(later < earlier for earlier, later in itertools.pairwise(self.totals)):
            problems.append(
                f"the API total fell from {max(self.totals)} to {min(self.totals)} during the"
                " sync; offset paging skips records when rows are deleted mid-sync"
            )
        repeated = self.received - self.without_id - self.withheld_with_id - landed
        if repeated > 0:
            problems.append(f"{repeated} ids arrived twice: records shifted between pages")
        problem = "; ".join(problems)
        return Reconciliation(
            passed=not problem,
            api_total=last,
            received=self.received,
            landed=landed,
            withheld=self.withheld,
            without_id=self.without_id,
            reason=problem or f"a row landed for each of the {last} records the API reports",
        )


class SyncLedger:
    """One `ResourceLedger` per resource for one run of the source."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, ResourceLedger] = {}

    def __getitem__(self, resource: str) -> ResourceLedger:
        with self._lock:
            return self._resources.setdefault(resource, ResourceLedger(resource))

    def reset(self, resource: str) -> ResourceLedger:
        """A clean ledger for `resource`, before it is read again."""
        with self._lock:
            self._resources[resource] = ResourceLedger(resource)
            return self._resources[resource]

    def resources(self) -> list[ResourceLedger]:
        with self._lock:
            return list(self._resources.values())
