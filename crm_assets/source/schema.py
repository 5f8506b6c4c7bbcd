"""The declared warehouse schema of every CRM table, read from `schemas/crm.schema.yaml`.

The file is written by `crm-assets schema infer` from the CRM API's own responses and reviewed
like code (README "Schema"). Nested API objects are flattened into `<object>__<field>` columns, as
dlt names them; lists stay one JSON column, so a table never grows child tables. `renames` maps
vendor-branded API fields to the neutral names the warehouse uses.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_FILE = Path(__file__).parent / "schemas" / "crm.schema.yaml"
SCHEMA_FILE_ENV = "CRM_SCHEMA_FILE"
# Set by us after a full sync when the API no longer returns the record; NULL while it is live.
DELETED_AT = "_deleted_at"
PRIMARY_KEY = "id"
# A declared decimal's default: room for what CRMs send (16-digit totals in IDR/VND/KRW, six
# decimals of a converted currency) in the widest type DuckDB and arrow's decimal128 hold.
DECIMAL_PRECISION, DECIMAL_SCALE = 38, 9
MAX_DECIMAL_PRECISION = 38
DATA_TYPES = ("bigint", "double", "decimal", "text", "bool", "timestamp", "date", "json")


class SchemaFileError(ValueError):
    """A schema file that cannot be used; names the file, table and column."""


@dataclass(frozen=True)
class Column:
    """One warehouse column; `api_name` is the API's field path (dots into objects) if different."""

    name: str
    data_type: str  # one of DATA_TYPES (dlt's names)
    nullable: bool = True
    description: str = ""
    api_name: str | None = None
    precision: int | None = None  # decimals only: None is DECIMAL_PRECISION
    scale: int | None = None  # decimals only: None is DECIMAL_SCALE

    @property
    def digits(self) -> tuple[int, int]:
        """(precision, scale) a decimal column keeps."""
        precision = DECIMAL_PRECISION if self.precision is None else self.precision
        return precision, DECIMAL_SCALE if self.scale is None else self.scale

    @property
    def api_path(self) -> tuple[str, ...]:
        """Where the value sits in an API record: `address__city` reads `address.city`."""
        return tuple((self.api_name or self.name.replace("__", ".")).split("."))

    @property
    def is_primary_key(self) -> bool:
        return self.name == PRIMARY_KEY

    def dlt_hint(self) -> dict[str, Any]:
        """The column as dlt sees it.

        Only the primary key is NOT NULL in the warehouse: a declared non-null field that comes
        null is counted as drift and the row still loads. The key has no type hint unless it is
        declared decimal (ids past 64 bits), so the table keeps the ids exactly as the API sends
        them, integers or strings.
        """
        if self.is_primary_key:
            hint = {"name": self.name, "nullable": False, "primary_key": True}
            if self.data_type == "decimal":
                hint |= {"data_type": "decimal", "precision": self.digits[0], "scale": 0}
            return hint
        hint = {"name": self.name, "data_type": self.data_type, "nullable": True}
        if self.data_type == "decimal":
            hint |= dict(zip(("precision", "scale"), self.digits, strict=True))
        if self.data_type == "timestamp":
            hint["timezone"] = True
        return hint


_DELETED_AT_COLUMN = Column(
    DELETED_AT, "timestamp", description="When a full sync found it gone from the CRM"
)


@dataclass(frozen=True)
class CrmSchema:
    """Declared columns per resource and the rename map, as read from one schema file."""

    tables: Mapping[str, tuple[Column, ...]]
    renames: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None

    def columns(self, resource: str) -> tuple[Column, ...]:
        """The file's columns, then `_deleted_at`; () for a resource the file does not declare."""
        declared = self.tables.get(resource, ())
        return (*declared, _DELETED_AT_COLUMN) if declared else ()


def _column(path: Path, table: str, name: str, hints: Any, api_names: dict[str, str]) -> Column:
    where = f"{path}: table {table!r}, column {name!r}"
    if not isinstance(hints, dict) or hints.get("data_type") not in DATA_TYPES:
        raise SchemaFileError(f"{where}: data_type must be one of {', '.join(DATA_TYPES)}")
    precision, scale = hints.get("precision"), hints.get("scale")
    if precision is not None or scale is not None:
        precision = DECIMAL_PRECISION if precision is None else precision
        scale = DECIMAL_SCALE if scale is None else scale
        if hints["data_type"] != "decimal" or not (
            type(precision) is int
            and type(scale) is int
            and 0 <= scale <= precision <= MAX_DECIMAL_PRECISION
            and precision > 0
        ):
            raise SchemaFileError(
                f"{where}: precision and scale belong to a decimal, with"
                f" 0 <= scale <= precision <= {MAX_DECIMAL_PRECISION}"
            )
    return Column(
        name=name,
        data_type=hints["data_type"],
        nullable=bool(hints.get("nullable", True)),
        description=str(hints.get("description") or ""),
        api_name=api_names.get(name),
        precision=precision,
        scale=scale,
    )


def parse_schema(document: Mapping[str, Any], path: Path) -> CrmSchema:
    """A `CrmSchema` from the file's YAML document (dlt's layout: tables -> columns -> hints)."""
    renames = {str(k): str(v) for k, v in (document.get("renames") or {}).items()}
    api_names = {neutral: api for api, neutral in renames.items()}
    tables = {}
    for table, spec in (document.get("tables") or {}).items():
        columns = (spec or {}).get("columns") or {}
        if PRIMARY_KEY not in columns:
            raise SchemaFileError(f"{path}: table {table!r} declares no {PRIMARY_KEY!r} column")
        tables[table] = tuple(
            _column(path, table, name, hints, api_names) for name, hints in columns.items()
        )
    return CrmSchema(tables=tables, renames=renames, path=path)


def load_schema(path: Path = SCHEMA_FILE) -> CrmSchema:
    """The schema in `path`; read again only when the file changed."""
    try:
        version = path.stat().st_mtime_ns
    except OSError as error:
        raise SchemaFileError(f"cannot read schema file {path}: {error.strerror}") from None
    return _load(path, version)


@functools.cache
def _load(path: Path, version: int) -> CrmSchema:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SchemaFileError(f"cannot read schema file {path}: {error}") from None
    return parse_schema(document, path)


def schema_path() -> Path:
    """The schema file in force: $CRM_SCHEMA_FILE, else the one shipped with the project."""
    configured = os.environ.get(SCHEMA_FILE_ENV)
    return Path(configured).expanduser().resolve() if configured else SCHEMA_FILE


def crm_schema() -> CrmSchema:
    return load_schema(schema_path())


def declared_columns(resource: str) -> tuple[Column, ...]:
    """The declared columns of a resource; () for a resource nobody declared (it evolves freely)."""
    return crm_schema().columns(resource)


def dlt_columns(resource: str) -> list[dict[str, Any]]:
    """dlt column hints, so every declared column exists with its type even when all-null.

    Every table gets `_deleted_at`, declared or not, since every sync marks deletions.
    """
    columns = declared_columns(resource) or (_DELETED_AT_COLUMN,)
    return [column.dlt_hint() for column in columns]


def rename_map(resource: str) -> dict[str, str]:
    """API field -> warehouse column, for the fields whose API name differs."""
    return {c.api_name: c.name for c in declared_columns(resource) if c.api_name}
