"""Asset checks on every CRM table, shown beside each asset in the UI.

Two kinds: checks that need what the sync saw (reconciliation with the API's total, records
gone upstream, records rejected) are reported by the sync step itself; checks on the table's
contents (ids, declared columns) are their own step, so they can also run on demand.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dlt.destinations.sql_client import SqlClientBase

from crm_assets.defs.crm.translator import asset_key
from crm_assets.source.history import HISTORY_SUFFIX, history_table
from crm_assets.source.ledger import Reconciliation, ResourceLedger
from crm_assets.source.schema import declared_columns
from crm_assets.warehouse.resource import WAREHOUSE_POOL, WarehouseResource
from crm_assets.warehouse.tables import existing_tables, history_problems, id_counts, stored_columns

RECONCILED = "reconciled_with_api"
GONE_UPSTREAM = "gone_upstream"
SCHEMA_DRIFT = "no_schema_drift"
ID_UNIQUE = "id_unique_not_null"
DECLARED_COLUMNS = "declared_columns"
HISTORY_CONSISTENT = "versions_consistent"


def sync_check_specs(resources: list[str]) -> list[dg.AssetCheckSpec]:
    """Checks the sync step reports, from the counts it kept while paging."""
    specs = []
    for name in resources:
        key = asset_key(name)
        specs += [
            dg.AssetCheckSpec(
                RECONCILED,
                asset=key,
                description=(
                    "A row landed for every record the API's total reports (values set aside"
                    " still count; a record withheld whole does not). Blocking: a table short"
                    " of the API fails the run, and nothing downstream builds on it."
                ),
                blocking=True,
            ),
            dg.AssetCheckSpec(
                GONE_UPSTREAM,
                asset=key,
                description="Rows the API no longer returns (marked in _deleted_at); WARN if any.",
            ),
            dg.AssetCheckSpec(
                SCHEMA_DRIFT,
                asset=key,
                description=(
                    "The API's records match the declared schema; WARN naming each field that"
                    " came null, absent or of another type, with counts."
                ),
            ),
        ]
    return specs


@dataclass(frozen=True)
class DeletionMarks:
    """What deletion marking did: rows marked by this sync, and in all (None: not run)."""

    newly: int | None
    total: int | None


def _drift_result(ledger: ResourceLedger) -> dg.AssetCheckResult:
    """WARN naming each drifted field and how often; the rows loaded all the same."""
    report = ledger.drift_report(declared_columns(ledger.resource))
    withheld = ledger.withheld
    summary = [f"{name}: {how}" for name, how in report.items()]
    if withheld:
        summary.append(f"{withheld} records withheld whole (see _quarantine)")
    return dg.AssetCheckResult(
        asset_key=asset_key(ledger.resource),
        check_name=SCHEMA_DRIFT,
        passed=not summary,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(summary) or "every record matched the declared schema",
        metadata={
            **{f"field {name}": how for name, how in report.items()},
            "fields_drifted": len(report),
            "values_set_aside": ledger.values_set_aside,
            "records_withheld": withheld,
            "records_without_id": ledger.without_id,
        },
    )


def sync_check_results(
    ledger: ResourceLedger,
    reconciliation: Reconciliation,
    marks: DeletionMarks,
    selected: set[dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    key = asset_key(ledger.resource)
    results = [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=RECONCILED,
            passed=reconciliation.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=reconciliation.reason,
            metadata={
                "api_total": reconciliation.api_total,
                "records_received": reconciliation.received,
                "distinct_ids_landed": reconciliation.landed,
                "records_withheld": reconciliation.withheld,
                "records_without_id": reconciliation.without_id,
                "sync_mode": reconciliation.mode,
            },
        ),
        _drift_result(ledger),
    ]
    if gone_upstream_not_checked(reconciliation, marks) is None:
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=GONE_UPSTREAM,
                passed=marks.newly == 0,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"{marks.newly} rows newly gone from the API, {marks.total} marked in all"
                ),
                metadata={"newly_marked_deleted": marks.newly, "marked_deleted": marks.total},
            )
        )
    yield from (r for r in results if dg.AssetCheckKey(key, r.check_name) in selected)


def gone_upstream_not_checked(reconciliation: Reconciliation, marks: DeletionMarks) -> str | None:
    """Why `gone_upstream` is not evaluated in this sync (None: it is). Dagster then shows the
    check as skipped in the run, rather than a WARN nobody should act on."""
    if reconciliation.mode == "incremental":
        return (
            "an incremental sync sees only changed records; the full sync"
            " (crm_reconcile_schedule) marks deletions"
        )
    if marks.newly is None:
        return "the sync did not reconcile, so absent ids prove nothing"
    return None


def _id_check(client: SqlClientBase, resource: str) -> dg.AssetCheckResult:
    rows, with_id, distinct = id_counts(client, resource)
    return dg.AssetCheckResult(
        asset_key=asset_key(resource),
        check_name=ID_UNIQUE,
        passed=rows == with_id == distinct,
        metadata={"rows": rows, "null_ids": rows - with_id, "duplicate_ids": with_id - distinct},
    )


def _columns_check(resource: str, stored: dict[str, Any]) -> dg.AssetCheckResult:
    """Every declared column exists with its declared type, as read back from the warehouse."""
    problems = []
    for column in declared_columns(resource):
        actual = stored.get(column.name)
        if actual is None:
            problems.append(f"{column.name}: missing")
        elif column.is_primary_key:
            continue  # the ids keep the type the API sends them in
        elif actual.get("data_type") != column.data_type:
            problems.append(
                f"{column.name}: {actual.get('data_type')}, declared {column.data_type}"
            )
        elif (
            column.data_type == "decimal"
            and (kept := (actual.get("precision"), actual.get("scale"))) != column.digits
        ):
            # dlt never alters a column's type: a table made with narrower decimals keeps them
            problems.append(
                f"{column.name}: decimal{kept}, declared decimal{column.digits}; alter the"
                " column to the declared type"
            )
    return dg.AssetCheckResult(
        asset_key=asset_key(resource),
        check_name=DECLARED_COLUMNS,
        passed=not problems,
        description="; ".join(problems) or "all declared columns present with their types",
        metadata={"problems": len(problems), "columns_in_table": len(stored)},
    )


def _history_check(client: SqlClientBase, resource: str) -> dg.AssetCheckResult:
    table = history_table(resource)
    counts: dict[str, int] = {}
    if existing_tables(client, [table]):
        doubled, overlapping, unmatched = history_problems(client, resource)
        counts = {
            "ids with more than one current version": doubled,
            "versions overlapping the one before": overlapping,
            f"live rows of crm/{resource} without exactly one current version": unmatched,
        }
    problems = [f"{count} {what}" for what, count in counts.items() if count]
    if not counts:
        problems = [f"table {table!r} does not exist in the warehouse"]
    return dg.AssetCheckResult(
        asset_key=asset_key(table),
        check_name=HISTORY_CONSISTENT,
        passed=not problems,
        description="; ".join(problems) or "one current version per live id, no overlaps",
        metadata={what.split(" of ")[0]: count for what, count in counts.items()},
    )


def build_table_checks(
    resources: list[str], history: Collection[str] = ()
) -> dg.AssetChecksDefinition:
    """Content checks for every CRM table (and each history table), one subsettable step in
    the warehouse pool."""
    specs = [
        spec
        for name in resources
        for spec in (
            dg.AssetCheckSpec(
                ID_UNIQUE, asset=asset_key(name), description="id unique, never null"
            ),
            dg.AssetCheckSpec(
                DECLARED_COLUMNS,
                asset=asset_key(name),
                description="Declared columns present with their declared types (id: any)",
            ),
        )
    ]

    specs += [
        dg.AssetCheckSpec(
            HISTORY_CONSISTENT,
            asset=asset_key(history_table(name)),
            description=(
                "At most one current version per id, no version overlapping the one before it,"
                f" and exactly one current version for every live row of crm/{name}"
            ),
        )
        for name in history
    ]

    @dg.multi_asset_check(
        specs=specs, can_subset=True, pool=WAREHOUSE_POOL, name="crm_table_checks"
    )
    def crm_table_checks(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        with warehouse.destination_client() as client:
            for check_key in sorted(context.selected_asset_check_keys, key=str):
                resource = check_key.asset_key.path[-1]
                if check_key.name == HISTORY_CONSISTENT:
                    yield _history_check(client.sql_client, resource.removesuffix(HISTORY_SUFFIX))
                    continue
                stored = stored_columns(client, resource)
                if not stored:
                    yield dg.AssetCheckResult(
                        asset_key=check_key.asset_key,
                        check_name=check_key.name,
                        passed=False,
                        description=f"table {resource!r} does not exist in the warehouse",
                    )
                elif check_key.name == ID_UNIQUE:
                    yield _id_check(client.sql_client, resource)
                else:
                    yield _columns_check(resource, stored)

    return crm_table_checks
