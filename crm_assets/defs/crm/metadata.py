"""What a CRM table's materialization shows in the UI beyond dagster-dlt's own metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from crm_assets.source.history import VALID_FROM, VALID_TO
from crm_assets.source.schema import DECIMAL_PRECISION, DECIMAL_SCALE, DELETED_AT, declared_columns
from crm_assets.source.types import TYPES

UNDECLARED = "Not in the declared schema: dlt added it from the API's records"
_DLT_COLUMNS = {
    "_dlt_load_id": "The dlt load that last wrote the row (see the dataset's _dlt_loads)",
    "_dlt_id": "dlt's unique id of the row",
}


def display_type(data_type: str, precision: int | None = None, scale: int | None = None) -> str:
    """dlt's type as a reader of the table needs it: a decimal's precision, a timestamp's zone."""
    known = TYPES.get(data_type)
    if known is None:
        return data_type  # a type dlt gave an undeclared column, and no declared one has
    return known.display.format(
        precision=precision or DECIMAL_PRECISION, scale=DECIMAL_SCALE if scale is None else scale
    )


def column_schema(
    resource: str, loaded: Mapping[str, Mapping[str, Any]] | None = None
) -> dg.TableSchema:
    """Declared columns with descriptions, then the undeclared ones dlt added (`loaded`: its
    columns of the table, None before any load) and dlt's own row columns, for the UI."""
    loaded = dict(loaded or {})
    for name in _DLT_COLUMNS:  # in every table, but dlt's schema has no type for them mid-run
        loaded.setdefault(name, {"data_type": "text"})
    declared = declared_columns(resource)
    names = {c.name for c in declared}
    return dg.TableSchema(
        columns=[
            *(
                dg.TableColumn(
                    name=c.name,
                    # a decimal id keeps no decimals (batches.py)
                    type=display_type(c.data_type, c.precision, 0 if c.is_primary_key else c.scale),
                    description=c.description or None,
                    constraints=dg.TableColumnConstraints(
                        nullable=c.nullable, unique=c.name == "id"
                    ),
                )
                for c in declared
            ),
            *(
                dg.TableColumn(
                    name=name,
                    type=display_type(
                        str(column.get("data_type", "unknown")),
                        column.get("precision"),
                        column.get("scale"),
                    ),
                    description=_DLT_COLUMNS.get(name, UNDECLARED),
                )
                for name, column in loaded.items()
                if name not in names
            ),
        ]
    )


def table_metadata(
    table_name: str | None, columns: dg.TableSchema, row_count: int | None = None
) -> dict[str, str | int | dg.TableSchema]:
    """The entries Dagster's UI shows as a table's Storage, Columns and Row count, as
    `TableMetadataSet` writes them: `dagster` 1.13 keeps that class private."""
    entries: dict[str, str | int | dg.TableSchema] = {"dagster/column_schema": columns}
    if table_name is not None:
        entries["dagster/table_name"] = table_name
    if row_count is not None:
        entries["dagster/row_count"] = row_count
    return entries


_VALIDITY = {
    VALID_FROM: "When this version was first loaded (the load's time)",
    VALID_TO: "When a later version or a deletion replaced it; NULL while current",
}


def history_column_schema(
    resource: str, loaded: Mapping[str, Mapping[str, Any]] | None = None
) -> dg.TableSchema:
    """`column_schema` of `<resource>_history`: the same columns, an id per version (not
    unique), no `_deleted_at`, and the validity interval."""
    columns = [
        dg.TableColumn(
            name=c.name,
            type=c.type,
            description=c.description,
            constraints=dg.TableColumnConstraints(nullable=False, unique=False),
        )
        if c.name == "id"
        else c
        for c in column_schema(resource, loaded).columns
        if c.name not in (DELETED_AT, *_VALIDITY)
    ]
    validity = [
        dg.TableColumn(name=name, type=display_type("timestamp"), description=description)
        for name, description in _VALIDITY.items()
    ]
    return dg.TableSchema(columns=[*columns, *validity])
