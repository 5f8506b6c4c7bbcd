"""A second dlt load after the main one: quarantined records, typed tables for empty resources.

Deletion marks and counts are SQL, in `crm_assets.warehouse.tables`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import dlt
import pyarrow as pa

from crm_assets.source.ledger import Rejection
from crm_assets.source.schema import dlt_columns

QUARANTINE_TABLE = "_quarantine"
_QUARANTINE_COLUMNS = [
    {"name": "resource", "data_type": "text", "nullable": False},
    {"name": "record_id", "data_type": "bigint", "nullable": True},
    {"name": "reason", "data_type": "text", "nullable": False},
    {"name": "record", "data_type": "json", "nullable": False},
    {"name": "sync_load_id", "data_type": "text", "nullable": True},
    {"name": "quarantined_at", "data_type": "timestamp", "nullable": False, "timezone": True},
]
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
