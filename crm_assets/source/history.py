"""History mode: every version of a resource's records in `<name>_history`, by dlt's `scd2`.

The history table is a second table of the resource, loaded in the same load as the current
state: the gate's rows go to both. dlt hashes each row (its `_dlt_id` there) and, per `id`,
closes the current version when a row with another hash arrives and opens the new one
(`valid_from`, `valid_to` NULL while current). Absent rows are never retired by dlt: an
incremental sync sees only changed records, and a full sync that did not reconcile proves
nothing. Records deleted upstream are closed after the load, with the deletion marks.
"""

from collections.abc import Iterable
from typing import Any

import dlt
from dlt.extract import DltResource

from crm_assets.source.schema import DELETED_AT, PRIMARY_KEY, declared_columns

HISTORY_SUFFIX = "_history"
VALID_FROM, VALID_TO = "valid_from", "valid_to"
SCD2 = {
    "disposition": "merge",
    "strategy": "scd2",
    "validity_column_names": [VALID_FROM, VALID_TO],
    "retire_absent_rows": False,
}


def history_table(resource: str) -> str:
    return f"{resource}{HISTORY_SUFFIX}"


def _columns(resource: str) -> list[dict[str, Any]]:
    """The declared columns, the id no longer a key (one row per version); deletions close a
    version instead of marking `_deleted_at`."""
    columns = []
    for column in declared_columns(resource):
        if column.name == DELETED_AT:
            continue
        hint = column.dlt_hint()
        if column.is_primary_key:
            hint = {k: v for k, v in hint.items() if k != "primary_key"}
        columns.append(hint)
    return columns


def add_history_table(resource: DltResource) -> str:
    """Declares `<name>_history` as a table of `resource`, merged as scd2 on `id`."""
    table = history_table(resource.name)
    variant = {"table_name": table, "create_table_variant": True}
    resource.apply_hints(**variant, primary_key=[], columns=[])
    resource.apply_hints(
        **variant, write_disposition=SCD2, merge_key=PRIMARY_KEY, columns=_columns(resource.name)
    )
    return table


def history_rows(table: str, rows: Iterable[dict[str, Any]]) -> Any:
    """The gate's rows for the history table (copies: dlt's normaliser changes what it loads),
    without `_deleted_at`: a deletion closes a version instead."""
    versions = [{k: v for k, v in row.items() if k != DELETED_AT} for row in rows]
    return dlt.mark.with_table_name(versions, table)
