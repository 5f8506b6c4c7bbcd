"""The record gate: API records become rows under neutral names, converted losslessly or set aside.

Policy (README "Schema"): a record with a usable id always becomes a row. A value is converted to
its declared type only when nothing is lost (each type's converter in types.py); a value that
still does not fit loads as NULL and goes to `_quarantine`, counted per field. The primary key is
kept exactly as the API sends it. Strict mode instead withholds the whole record. A record
without an id cannot merge and never reaches a table. Fields nobody declared pass through and
evolve the table.
"""

from __future__ import annotations

from typing import Any

from crm_assets.source.ledger import Rejection, ResourceLedger
from crm_assets.source.schema import DELETED_AT, PRIMARY_KEY, Column, declared_columns
from crm_assets.source.types import TYPES, converter

NUL = "\x00"
NUL_REMOVED = "NUL bytes removed"  # a drift kind: the warehouse refuses them (PostgreSQL)
_MISSING = object()
_NOT_AN_OBJECT = object()


class TypeDriftError(ValueError):
    """A value that does not fit its declared column; the message never holds the value."""

    def __init__(self, column: str, expected: str, value: Any) -> None:
        super().__init__(f"field {column!r}: expected {expected}, got {type(value).__name__}")


def _lookup(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, `_MISSING` when a key is absent, None under a null object."""
    value: Any = record
    for depth, part in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeDriftError(".".join(path[:depth]), "object", value)
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def usable_id(value: Any) -> int | str | None:
    """The id as the API sent it, if a merge can key on it: a whole number of any size (ids
    past 64 bits go to a wide decimal column, see batches.py) or a non-empty text."""
    if type(value) is int or (type(value) is str and value):
        return value
    return None


def without_nul(value: Any) -> Any:
    """`value` with NUL characters removed from every string in it, keys included."""
    if type(value) is str:
        return value.replace(NUL, "")
    if type(value) is list:
        return [without_nul(item) for item in value]
    if type(value) is dict:
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def _holds_nul(value: Any) -> bool:
    if type(value) is str:
        return NUL in value
    if type(value) is list:
        return any(_holds_nul(item) for item in value)
    if type(value) is dict:
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


class RecordGate:
    """One resource's records to rows: a row, or `None` for a withheld record.

    Every record is counted in the ledger: its id, each declared field that came null or absent,
    each value set aside; the set-aside values and withheld records wait there for `_quarantine`.
    """

    def __init__(
        self,
        resource: str,
        ledger: ResourceLedger,
        strict: bool = False,
        columns: tuple[Column, ...] | None = None,
        strip_nul: bool = False,
    ) -> None:
        """`strip_nul`: the warehouse refuses NUL in text and JSON (PostgreSQL), so they are
        removed from every value and counted per field; an id holding one is withheld."""
        self.resource, self.ledger, self.strict = resource, ledger, strict
        self.strip_nul = strip_nul
        self.columns = declared_columns(resource) if columns is None else columns
        key = next((c for c in self.columns if c.is_primary_key), Column(PRIMARY_KEY, "bigint"))
        self._key_path, self._key_type = key.api_path, key.data_type
        self._key_class = int if key.data_type in ("bigint", "decimal") else str
        # Per column: name, top-level field, field inside it (or None), converter, the Python
        # type that needs no conversion, nullability, type name. Deeper paths use `_lookup`.
        self._plan = [
            (
                c.name,
                c.api_path[0],
                c.api_path[1] if len(c.api_path) == 2 else None,
                c.api_path if len(c.api_path) > 2 else None,
                converter(c),
                TYPES[c.data_type].exact,
                c.nullable,
                c.data_type,
            )
            for c in self.columns
            if not c.is_primary_key and c.name != DELETED_AT
        ]
        self._consumed = {c.api_path[0] for c in self.columns}
        # Undeclared fields of a flattened object keep dlt's `<object>__<field>` naming.
        self._nested: dict[str, set[str]] = {}
        for column in self.columns:
            if len(column.api_path) == 2:
                self._nested.setdefault(column.api_path[0], set()).add(column.api_path[1])

    def _withhold(self, record_id: int | str | None, reason: str, record: Any) -> None:
        self.ledger.withhold(Rejection(self.resource, record_id, None, reason, record))

    def __call__(self, record: Any) -> dict[str, Any] | None:
        if not isinstance(record, dict):
            self.ledger.saw_record(None)
            self._withhold(None, f"record is a {type(record).__name__}, not an object", record)
            return None
        try:
            raw_id = _lookup(record, self._key_path)
        except TypeDriftError:
            raw_id = None
        record_id = usable_id(raw_id)
        self.ledger.saw_record(record_id)
        if record_id is None:
            kind = "missing" if raw_id in (None, _MISSING) else type(raw_id).__name__
            self._withhold(None, f"field {PRIMARY_KEY!r}: no usable id ({kind})", record)
            return None
        if self.strip_nul and type(record_id) is str and NUL in record_id:
            reason = f"field {PRIMARY_KEY!r}: holds a NUL byte, which the warehouse cannot store"
            self._withhold(record_id.replace(NUL, "\\0"), reason, record)
            return None
        if type(record_id) is not self._key_class:
            self.ledger.drift(PRIMARY_KEY, f"not {self._key_type} (kept as sent)")
        row: dict[str, Any] = {PRIMARY_KEY: record_id, DELETED_AT: None}
        set_aside: list[Rejection] = []
        for name, top, inner, deep, convert, as_is, nullable, data_type in self._plan:
            value = record.get(top, _MISSING)
            if deep is not None:
                try:
                    value = _lookup(record, deep)
                except TypeDriftError as drift:
                    value = _NOT_AN_OBJECT
                    reason = str(drift)
            elif inner is not None and value is not None and value is not _MISSING:
                if type(value) is dict:
                    value = value.get(inner, _MISSING)
                else:
                    reason = str(TypeDriftError(top, "object", value))
                    value = _NOT_AN_OBJECT
            if value is _NOT_AN_OBJECT:  # an object expected on the path, something else sent
                row[name] = None
                parent = record.get(top)
                set_aside.append(Rejection(self.resource, record_id, name, reason, parent))
            elif value is None or value is _MISSING:
                row[name] = None
                if value is _MISSING:
                    self.ledger.drift(name, "absent")
                elif not nullable:
                    self.ledger.drift(name, "null")
                if self.strict and not nullable:
                    reason = str(TypeDriftError(name, f"non-null {data_type}", None))
                    set_aside.append(Rejection(self.resource, record_id, name, reason, None))
            elif type(value) is as_is:
                row[name] = value
            else:
                try:
                    row[name] = convert(value)
                except (TypeError, ValueError):
                    row[name] = None
                    reason = str(TypeDriftError(name, data_type, value))
                    set_aside.append(Rejection(self.resource, record_id, name, reason, value))
        if set_aside:
            if self.strict:
                self._withhold(record_id, "; ".join(r.reason for r in set_aside), record)
                return None
            for rejection in set_aside:
                self.ledger.set_aside(rejection)
        if not self._consumed.issuperset(record):
            for key, value in record.items():
                if key not in self._consumed:
                    row[key] = value  # undeclared: dlt names, types and adds the column
        for key, declared in self._nested.items():
            value = record.get(key)
            if type(value) is dict:
                row.update({f"{key}__{k}": v for k, v in value.items() if k not in declared})
        if self.strip_nul:
            for name, value in row.items():
                if type(value) is not int and _holds_nul(value):
                    row[name] = without_nul(value)
                    self.ledger.drift(name, NUL_REMOVED)
        return row
