"""What a CRM table's materialization shows in the UI beyond dagster-dlt's own metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from crm_assets.source.schema import declared_columns


def column_schema(resource: str, loaded: Mapping[str, Mapping[str, Any]]) -> dg.TableSchema:
    """Declared columns with descriptions, then any undeclared ones dlt added, for the UI."""
    declared = declared_columns(resource)
    names = {c.name for c in declared}
    return dg.TableSchema(
        columns=[
            *(
                dg.TableColumn(
                    name=c.name,
                    type=c.data_type,
                    description=c.description or None,
                    constraints=dg.TableColumnConstraints(
                        nullable=c.nullable, unique=c.name == "id"
                    ),
                )
                for c in declared
            ),
            *(
                dg.TableColumn(name=name, type=str(column.get("data_type", "unknown")))
                for name, column in loaded.items()
                if name not in names
            ),
        ]
    )
