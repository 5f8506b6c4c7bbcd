"""A second dlt load after the main one: quarantined records, typed tables for empty resources.

Deletion marks and counts are SQL, in `crm_assets.warehouse.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import dlt
import pyarrow as pa

from crm_assets.source.ledger import Rejection
from crm_assets.source.schema import declared_columns, dlt_columns

QUARANTINE_TABLE = "_quarantine"
# One row per value set aside (`field` names it) or record withheld whole (`field` NULL).
# `raw_value` is the API's value as JSON text: a JSON column would turn scalars into NULL.
_QUARANTINE_COLUMNS = [
    {"name": "resource", "data_type": "text", "nullable": False},
    {"name": "record_id", "data_type": "text", "nullable": True},
    {"name": "field", "data_type": "text", "nullable": True},
    {"name": "reason", "data_type": "text", "nullable": False},
    {"name": "raw_value", "data_type": "text", "nullable": True},
    {"name": "sync_load_id", "data_type": "text", "nullable": True},
    {"name": "quarantined_at", "data_type": "timestamp", "nullable": False, "timezone": True},
]
# dlt adds these to every row it normalizes from JSON; an empty table must have them too, or
# the first real rows would need columns added NOT NULL to an existing table.
_DLT_ROW_COLUMNS = [
    {"name": "_dlt_load_id", "data_type": "text", "nullable": False},
    {"name": "_dlt_id", "data_type": "text", "nullable": False, "unique": True},
]
_ID_TYPES = {"bigint": pa.int64(), "text": pa.string()}


def _empty_batch(table: str) -> pa.Table:
    """No rows, but the id typed as declared (the API's ids decide it once rows arrive)."""
    declared = next((c for c in declared_columns(table) if c.is_primary_key), None)
    id_type = _ID_TYPES.get(declared.data_type if declared else "bigint", pa.string())
    return pa.table(
        {
            "id": pa.array([], id_type),
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
    """Appends set-aside values and withheld records to `_quarantine`; creates empty tables.

    dlt creates a table only when rows arrive; an empty arrow batch carries the declared
    columns, so a resource with no records still gets its typed, empty table.
    """
    now = datetime.now(UTC)
    resources = [
        dlt.resource(
            [_empty_batch(table)],
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
                "record_id": None if r.record_id is None else str(r.record_id),
                "field": r.field,
                "reason": r.reason,
                "raw_value": json.dumps(r.value, default=str),
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
