"""What a sync does in the warehouse after dlt's load: quarantine, empty tables, deletion marks.

All SQL goes through dlt's SQL client for the pipeline's destination, so it runs wherever dlt
loads (DuckDB here, Postgres and the cloud warehouses the same way).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import dlt
import pyarrow as pa
from dlt.destinations.sql_client import SqlClientBase

from crm_assets.ledger import Rejection
from crm_assets.schema import DELETED_AT, dlt_columns

QUARANTINE_TABLE = "_quarantine"
_QUARANTINE_COLUMNS = [
    {"name": "resource", "data_type": "text", "nullable": False},
    {"name": "record_id", "data_type": "bigint", "nullable": True},
    {"name": "reason", "data_type": "text", "nullable": False},
    {"name": "record", "data_type": "json", "nullable": False},
    {"name": "sync_load_id", "data_type": "text", "nullable": True},
    {"name": "quarantined_at", "data_type": "timestamp", "nullable": False, "timezone": True},
]
_UPDATE_BATCH = 500
# dlt adds these to every row it normalizes from JSON; an empty table must have them too, or
# the first real rows would need columns added NOT NULL to an existing table.
_DLT_ROW_COLUMNS = [
    {"name": "_dlt_load_id", "data_type": "text", "nullable": False},
    {"name": "_dlt_id", "data_type": "text", "nullable": False, "unique": True},
]
_EMPTY_BATCH = pa.table(
    {
        "id": pa.array([], pa.int64()),
        "_dlt_load_id": pa.array([], pa.string()),
        "_dlt_id": pa.array([], pa.string()),
    }
)


def existing_tables(client: SqlClientBase, tables: Iterable[str]) -> set[str]:
    """Which of `tables` exist in the client's dataset."""
    wanted = set(tables)
    rows = client.execute_sql(
        "select table_name from information_schema.tables where table_schema = %s",
        client.dataset_name,
    )
    return {row[0] for row in rows or []} & wanted


def follow_up_load(
    pipeline: dlt.Pipeline,
    rejections: list[Rejection],
    tables_to_create: Iterable[str],
    sync_load_id: str | None,
    loader_file_format: str,
) -> None:
    """Appends rejected records to `_quarantine` and creates declared tables that got no rows.

    dlt creates a table only when rows arrive; an empty arrow batch carries the declared
    columns, so a resource with no records still gets its typed, empty table.
    """
    now = datetime.now(UTC)
    resources = [
        dlt.resource(
            [_EMPTY_BATCH],
            name=table,
            primary_key="id",
            write_disposition="merge",
            columns=[*dlt_columns(table), *_DLT_ROW_COLUMNS],
        )
        for table in tables_to_create
    ]
    if rejections:
        rows = [
            {
                "resource": r.resource,
                "record_id": r.record_id,
                "reason": r.reason,
                "record": r.record,
                "sync_load_id": sync_load_id,
                "quarantined_at": now,
            }
            for r in rejections
        ]
        resources.append(
            dlt.resource(
                rows,
                name=QUARANTINE_TABLE,
                write_disposition="append",
                columns=_QUARANTINE_COLUMNS,
            )
        )
    if resources:
        pipeline.run(resources, loader_file_format=loader_file_format).raise_on_failed_jobs()


def mark_deleted(
    client: SqlClientBase, table: str, live_ids: set[int], at: datetime
) -> tuple[int, int]:
    """Stamps `_deleted_at` on live rows whose id the API no longer returns.

    Returns (rows marked now, rows marked in all). A record that comes back is merged in again
    with `_deleted_at` NULL, as dlt replaces the whole row.
    """
    qualified = client.make_qualified_table_name(table)
    live_rows = client.execute_sql(f"select id from {qualified} where {DELETED_AT} is null")
    gone = sorted({row[0] for row in live_rows or []} - live_ids)
    with client.begin_transaction():
        for start in range(0, len(gone), _UPDATE_BATCH):
            batch = gone[start : start + _UPDATE_BATCH]
            placeholders = ", ".join(["%s"] * len(batch))
            client.execute_sql(
                f"update {qualified} set {DELETED_AT} = %s where id in ({placeholders})",
                at,
                *batch,
            )
    marked = client.execute_sql(f"select count(*) from {qualified} where {DELETED_AT} is not null")
    return len(gone), marked[0][0]


def row_counts(client: SqlClientBase, table: str) -> tuple[int, int]:
    """(all rows, rows not marked deleted) of a table."""
    qualified = client.make_qualified_table_name(table)
    query = f"select count(*), count(*) - count({DELETED_AT}) from {qualified}"
    rows, live = client.execute_sql(query)[0]
    return rows, live
