"""What a CRM table's materialization shows in the UI beyond dagster-dlt's own metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from crm_assets.source.schema import DECIMAL_PRECISION, DECIMAL_SCALE, declared_columns

UNDECLARED = "Not in the declared schema: dlt added it from the API's records"
_DLT_COLUMNS = {
    "_dlt_load_id": "The dlt load that last wrote the row (see the dataset's _dlt_loads)",
    "_dlt_id": "dlt's unique id of the row",
}


def display_type(data_type: str, precision: int | None = None, scale: int | None = None) -> str:
    """dlt's type as a reader of the table needs it: a decimal's precision, a timestamp's zone."""
    if data_type == "decimal":
        return (
            f"decimal({precision or DECIMAL_PRECISION},{DECIMAL_SCALE if scale is None else scale})"
        )
    if data_type == "timestamp":
        return "timestamp with time zone"
    return data_type


def column_schema(resource: str, loaded: Mapping[str, Mapping[str, Any]]) -> dg.TableSchema:
    """Declared columns with descriptions, then any undeclared ones dlt added, for the UI."""
    declared = declared_columns(resource)
    names = {c.name for c in declared}
    return dg.TableSchema(
        columns=[
            *(
                dg.TableColumn(
                    name=c.name,
                    type=display_type(c.data_type),
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
