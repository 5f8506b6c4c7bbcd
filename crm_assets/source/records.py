"""The record gate: API records become typed warehouse rows under neutral names, or quarantine.

Policy (README "Schema contract"): a declared column whose value has the wrong type, or a
non-nullable column without a value, sends the whole record to quarantine; a record without an
id never reaches a table. Nothing is coerced loosely: `"12"` in a bigint column is drift. Fields
nobody declared pass through and evolve the table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_assets.source.ledger import Rejection, ResourceLedger
from crm_assets.source.schema import DECIMAL_PRECISION, DECIMAL_SCALE, Column, declared_columns

_MAX_BIGINT = 2**63 - 1


class TypeDriftError(ValueError):
    """A value that does not fit its declared column; the message never holds the value."""

    def __init__(self, column: str, expected: str, value: Any) -> None:
        super().__init__(f"field {column!r}: expected {expected}, got {type(value).__name__}")


def _bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_BIGINT:
        raise TypeError
    return value


def _double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    return float(value)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise TypeError from None
    exponent = number.as_tuple().exponent
    # More decimals than the column keeps, or too large: the warehouse would round or overflow.
    if not number.is_finite() or -exponent > DECIMAL_SCALE:  # type: ignore[operator]
        raise TypeError
    if abs(number) >= Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE):
        raise TypeError
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _timestamp(value: Any) -> datetime:
    """ISO 8601; a timestamp without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise TypeError
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TypeError from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise TypeError
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TypeError from None


def _json(value: Any) -> Any:
    if not isinstance(value, list | dict):
        raise TypeError
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "bigint": _bigint,
    "double": _double,
    "decimal": _decimal,
    "text": _text,
    "bool": _bool,
    "timestamp": _timestamp,
    "date": _date,
    "json": _json,
}


def _lookup(record: dict[str, Any], column: Column) -> Any:
    value: Any = record
    for depth, part in enumerate(column.api_path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeDriftError(".".join(column.api_path[:depth]), "object", value)
        value = value.get(part)
    return value


def to_row(record: dict[str, Any], columns: tuple[Column, ...]) -> dict[str, Any]:
    """The warehouse row for an API record; raises `TypeDriftError` when it breaks the schema."""
    row: dict[str, Any] = {}
    for column in columns:
        value = _lookup(record, column)
        if value is None:
            if not column.nullable:
                raise TypeDriftError(column.name, f"non-null {column.data_type}", value)
            row[column.name] = None
            continue
        try:
            row[column.name] = _CONVERTERS[column.data_type](value)
        except TypeError:
            raise TypeDriftError(column.name, column.data_type, value) from None
    consumed = {c.api_path[0] for c in columns}
    for key, value in record.items():
        if key not in consumed:
            row[key] = value  # undeclared: dlt names, types and adds the column
        elif isinstance(value, dict) and key not in row:
            # Undeclared fields of a flattened object keep dlt's `<object>__<field>` naming.
            declared = {c.api_path[1] for c in columns if c.api_path[0] == key}
            row.update({f"{key}__{k}": v for k, v in value.items() if k not in declared})
    return row


def _record_id(record: dict[str, Any], columns: tuple[Column, ...]) -> int | None:
    id_column = next((c for c in columns if c.name == "id"), Column("id", "bigint"))
    value = _lookup(record, id_column)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class RecordGate:
    """A dlt `map` step for one resource: a row, or `None` (then filtered) for a rejected record."""

    def __init__(self, resource: str, ledger: ResourceLedger) -> None:
        self.resource = resource
        self.ledger = ledger
        self.columns = declared_columns(resource)

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | None:
        record_id = _record_id(record, self.columns)
        self.ledger.saw_record(record_id)
        try:
            if record_id is None:
                raise TypeDriftError("id", "non-null bigint", record.get("id"))
            return to_row(record, self.columns)
        except TypeDriftError as drift:
            self.ledger.reject(Rejection(self.resource, record_id, str(drift), record))
            return None


def is_row(row: dict[str, Any] | None) -> bool:
    """The `filter` step after the gate."""
    return row is not None
