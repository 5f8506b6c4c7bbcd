"""Gated rows to pyarrow tables, and set-aside values to `_quarantine`, in the sync's own load.

dlt normalises Python dicts row by row; pyarrow tables it writes to parquet as they are. The
declared schema is exactly the arrow schema a batch needs, so rows that carry only declared
fields leave here as arrow tables of `BATCH_ROWS`. A row with undeclared fields, or a batch
whose ids are of mixed types or clash with a column already loaded, stays a dict: dlt then
names, types and evolves as before (and its contract refuses what must not change).

Quarantine rows are yielded to the `_quarantine` table from the same resource, so they commit
with the rows they belong to: a failed sync leaves neither.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.json import json as dlt_json
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema import Schema
from dlt.common.schema.utils import autodetect_sc_type
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.extract.exceptions import CurrentSourceSchemaNotAvailable
from dlt.extract.resource import DltResource
from dlt.sources.helpers.rest_client.client import PageData

from crm_assets.source.history import history_rows
from crm_assets.source.ledger import Rejection
from crm_assets.source.records import RecordGate
from crm_assets.source.schema import DELETED_AT, MAX_DECIMAL_PRECISION, PRIMARY_KEY, Column
from crm_assets.source.types import MAX_BIGINT, TYPES, arrow_type

BATCH_ROWS = 5_000
QUARANTINE_TABLE = "_quarantine"
DLT_LOAD_ID, DLT_ID = "_dlt_load_id", "_dlt_id"
# One row per value set aside (`field` names it) or record withheld whole (`field` NULL).
# `raw_value` is the API's value as JSON text: a JSON column would turn scalars into NULL.
QUARANTINE_COLUMNS: list[dict[str, Any]] = [
    {"name": "resource", "data_type": "text", "nullable": False},
    {"name": "record_id", "data_type": "text", "nullable": True},
    {"name": "field", "data_type": "text", "nullable": True},
    {"name": "reason", "data_type": "text", "nullable": False},
    {"name": "raw_value", "data_type": "text", "nullable": True},
    {"name": "sync_load_id", "data_type": "text", "nullable": True},
    {"name": "quarantined_at", "data_type": "timestamp", "nullable": False, "timezone": True},
]
# What dlt adds to each row it normalises; arrow rows carry them too, so either kind of row
# fits a table the other created.
DLT_ROW_COLUMNS: list[dict[str, Any]] = [
    {"name": DLT_LOAD_ID, "data_type": "text", "nullable": False},
    {"name": DLT_ID, "data_type": "text", "nullable": False, "unique": True, "row_key": True},
]
# dlt adds `_dlt_load_id` to each arrow batch as it extracts it (one column, no copy of the
# batch). `_dlt_id` stays ours: dlt's `add_dlt_id` rewrites every parquet file in the normalize
# step, which costs more than generating the ids here (docs/benchmarks.md).
ARROW_NORMALIZER_CONFIG = {"normalize.parquet_normalizer.add_dlt_load_id": True}
_ARROW_TYPES: dict[str, pa.DataType] = {name: row.arrow for name, row in TYPES.items()}
# Integer ids past 64 bits (unsigned 64-bit keys and wider) go to a decimal without decimals.
WIDE_ID = pa.decimal128(MAX_DECIMAL_PRECISION, 0)
_NOT_NULL = {PRIMARY_KEY, DLT_LOAD_ID, DLT_ID}
# An undeclared field's values of one class: the type dlt gives them, and arrow's for it.
_SCALARS: dict[type, tuple[str, pa.DataType]] = {
    row.dlt_infers: (name, row.arrow) for name, row in TYPES.items() if row.dlt_infers
}
# The ids `usable_id` lets through, kept as sent.
_ID_TYPES: dict[type, tuple[str, pa.DataType]] = {kind: _SCALARS[kind] for kind in (int, str)}


class _JsonAsTextNote(logging.Filter):
    """Drops dlt's per-batch warning that a declared `json` column arrives as arrow text.

    That is how dlt itself writes json to parquet, and every batch of a resource with a json
    column would repeat it; dlt's INFO lines still name each column.
    """

    def __init__(self, resources: Iterable[str]) -> None:
        super().__init__()
        self._prefixes = tuple(
            f"In resource: {name}, when merging arrow schema" for name in resources
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING and record.getMessage().startswith(self._prefixes)
        )


def quiet_json_as_text(resources: Iterable[str]) -> None:
    """Installs `_JsonAsTextNote` on dlt's logger once per process."""
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, _JsonAsTextNote) for f in dlt_logger.filters):
        dlt_logger.addFilter(_JsonAsTextNote(resources))


def _wide(record_id: Any) -> bool:
    return type(record_id) is int and not -MAX_BIGINT - 1 <= record_id <= MAX_BIGINT


def _load_id() -> str | None:
    """The load package being extracted (None outside a pipeline run)."""
    try:
        return dlt.current.load_package_state()["load_id"]  # type: ignore[no-any-return]
    except CurrentLoadPackageStateNotAvailable:
        return None


def _current_schema() -> Schema | None:
    """The schema of the source being extracted (None outside a pipeline run)."""
    try:
        return dlt.current.source_schema()
    except CurrentSourceSchemaNotAvailable:
        return None


@functools.cache
def _default_schema() -> Schema:
    """A schema with dlt's defaults: what a source's schema starts as."""
    return Schema("crm")


def _undeclared_type(values: list[Any], schema: Schema | None) -> tuple[str, pa.DataType] | None:
    """The type dlt gives an undeclared field with these values, when arrow can carry it as
    is: one class of value, which dlt's detections (e.g. ISO text as a timestamp) leave alone."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    typed = _SCALARS.get(kind)
    if typed is None:
        return None
    detections = (schema or _default_schema()).settings.get("detections", [])
    first = next(v for v in values if v is not None)
    return typed if autodetect_sc_type(detections, kind, first) in (None, typed[0]) else None


class ArrowBatcher:
    """Turns gated rows of one resource into arrow tables with the declared column types.

    Undeclared fields come along when dlt would type them the same way (one scalar type per
    batch); the names are dlt's, so either path adds the same column.
    """

    def __init__(self, table: str, columns: Iterable[Column]) -> None:
        self.table = table
        columns = tuple(columns)
        self._fields = [
            (c.name, c.data_type, arrow_type(c))
            for c in columns
            if not c.is_primary_key and c.name != DELETED_AT
        ]
        key = next((c for c in columns if c.is_primary_key), None)
        self._wide_id = (
            pa.decimal128(key.digits[0], 0) if key and key.data_type == "decimal" else WIDE_ID
        )
        self._declared = {PRIMARY_KEY, DELETED_AT, *(name for name, _, _ in self._fields)}
        self.width = len(self._declared)

    def arrow_ready(self, row: dict[str, Any]) -> bool:
        """Whether arrow can carry the row; if not, dlt's dict path takes it (and flattens
        undeclared objects, or makes nested tables of lists, as dlt does)."""
        if len(row) == self.width:
            return True
        return self._declared.issubset(row) and not any(
            type(value) is dict or type(value) is list
            for key, value in row.items()
            if key not in self._declared
        )

    def too_wide(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows whose integer id is past 64 bits while the table's id column is a bigint: no
        load could keep them (the caller withholds them, and the sync does not reconcile)."""
        if _loaded_types(_current_schema(), self.table).get(PRIMARY_KEY) != "bigint":
            return []
        return [row for row in rows if _wide(row[PRIMARY_KEY])]

    def _id_type(self, rows: list[dict[str, Any]], loaded: str | None) -> tuple[str, Any] | None:
        """The id column's type for these rows: dlt's name and arrow's (None: mixed kinds)."""
        id_class = type(rows[0][PRIMARY_KEY])
        if id_class not in _ID_TYPES or any(type(r[PRIMARY_KEY]) is not id_class for r in rows):
            return None
        if id_class is int and (loaded == "decimal" or any(_wide(r[PRIMARY_KEY]) for r in rows)):
            return "decimal", self._wide_id
        return _ID_TYPES[id_class]

    def table_of(self, rows: list[dict[str, Any]]) -> pa.Table | None:
        """The rows as one arrow table, or None when dlt must see them as dicts."""
        schema = _current_schema()
        loaded = _loaded_types(schema, self.table)
        typed_id = self._id_type(rows, loaded.get(PRIMARY_KEY))
        if typed_id is None:
            return None
        id_type_name, id_type = typed_id
        extra = [
            key
            for key in dict.fromkeys(k for r in rows if len(r) != self.width for k in r)
            if key not in self._declared
        ]
        if loaded.get(PRIMARY_KEY, id_type_name) != id_type_name:
            return None
        if any(loaded.get(name, type_name) != type_name for name, type_name, _ in self._fields):
            return None
        arrays: dict[str, pa.Array] = {
            PRIMARY_KEY: pa.array([r[PRIMARY_KEY] for r in rows], id_type)
        }
        try:
            for name, type_name, arrow_type in self._fields:
                values = [r[name] for r in rows]
                if type_name == "json":
                    values = [None if v is None else dlt_json.dumps(v) for v in values]
                arrays[name] = pa.array(values, arrow_type)
            naming = (schema or _default_schema()).naming
            for key in extra:
                values = [r.get(key) for r in rows]
                if all(v is None for v in values):
                    continue  # dlt adds no column for nulls alone either
                typed, name = _undeclared_type(values, schema), naming.normalize_path(key)
                if (
                    typed is None
                    or name in self._declared
                    or loaded.get(name, typed[0]) != typed[0]
                ):
                    return None
                arrays[key] = pa.array(values, typed[1])
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return None
        n = len(rows)
        arrays[DELETED_AT] = pa.nulls(n, _ARROW_TYPES["timestamp"])
        arrays[DLT_ID] = pa.array(generate_dlt_ids(n), pa.string())
        fields = [
            pa.field(name, array.type, nullable=name not in _NOT_NULL)
            for name, array in arrays.items()
        ]
        return pa.table(arrays, schema=pa.schema(fields))

    def empty(self, id_type_name: str) -> pa.Table:
        """No rows, every declared column typed: a resource with no records still gets its table."""
        id_type = self._wide_id if id_type_name == "decimal" else None
        types = {
            PRIMARY_KEY: id_type or _ARROW_TYPES.get(id_type_name, pa.string()),
            **{name: arrow_type for name, _, arrow_type in self._fields},
            DELETED_AT: _ARROW_TYPES["timestamp"],
            DLT_ID: pa.string(),
        }
        fields = [pa.field(n, t, nullable=n not in _NOT_NULL) for n, t in types.items()]
        return pa.schema(fields).empty_table()


def _loaded_types(schema: Schema | None, table: str) -> Mapping[str, str]:
    """The columns' data types as dlt's schema already knows them (empty when unknown)."""
    if schema is None or table not in schema.tables:
        return {}
    columns = schema.get_table_columns(table)
    return {name: column["data_type"] for name, column in columns.items() if "data_type" in column}


def quarantine_rows(rejections: list[Rejection], load_id: str | None) -> Any:
    """Rejections as `_quarantine` rows, routed there with that table's own hints."""
    now = datetime.now(UTC)
    rows = [
        {
            "resource": r.resource,
            "record_id": None if r.record_id is None else str(r.record_id),
            "field": r.field,
            "reason": r.reason,
            "raw_value": json.dumps(r.value, default=str),
            "sync_load_id": load_id,
            "quarantined_at": now,
        }
        for r in rejections
    ]
    return dlt.mark.with_table_name(rows, QUARANTINE_TABLE)


def add_quarantine_table(resource: DltResource) -> DltResource:
    """Declares `_quarantine` as a second table of `resource`: appended, with its own columns.

    A table variant starts from the resource's hints (merge on `id`, the resource's columns);
    those are cleared first so only the quarantine's own remain.
    """
    variant = {"table_name": QUARANTINE_TABLE, "create_table_variant": True}
    resource.apply_hints(**variant, write_disposition="append", primary_key=[], columns=[])
    resource.apply_hints(**variant, columns=QUARANTINE_COLUMNS)
    return resource


class GatedPages:
    """The record gate as a step on a `rest_api` resource: each page of records in, arrow
    batches of `BATCH_ROWS` rows (or dicts) and `_quarantine` rows out.

    dlt writes an arrow table per item, at a cost of milliseconds each, so rows are collected
    across pages and leave in batches; dlt's paginator says which page is the last, and that
    one flushes the rest. `_dlt_load_id` is dlt's to add (see `ARROW_NORMALIZER_CONFIG`).
    """

    def __init__(
        self,
        gate: RecordGate,
        batcher: ArrowBatcher,
        id_type_name: str,
        history: str | None = None,
    ) -> None:
        self.gate, self.batcher, self.id_type_name = gate, batcher, id_type_name
        self.history = history  # the history table, which gets every row too (history.py)
        self._batch: list[dict[str, Any]] = []  # rows arrow can carry
        self._loose: list[dict[str, Any]] = []  # rows only dlt's dict path can
        self._emitted = False

    def __call__(self, page: list[Any]) -> Iterator[Any]:
        ledger, batcher = self.gate.ledger, self.batcher
        if isinstance(page, PageData):  # its `total`, already checked by the paginator
            ledger.saw_total(page.response.json()["total"])
        for record in page:
            row = self.gate(record)
            if row is not None:
                (self._batch if batcher.arrow_ready(row) else self._loose).append(row)
            if len(self._batch) + len(self._loose) >= BATCH_ROWS:
                yield from self._flush()
            if len(ledger.pending) >= BATCH_ROWS:
                yield quarantine_rows(ledger.take_rejections(), _load_id())
        if _is_last(page):
            if self._batch or self._loose:
                yield from self._flush()
            elif not self._emitted:
                yield batcher.empty(self.id_type_name)
            if rejections := ledger.take_rejections():
                yield quarantine_rows(rejections, _load_id())

    def _flush(self) -> Iterator[Any]:
        batch, loose = self._batch, self._loose
        self._batch, self._loose, self._emitted = [], [], True
        yield from _flush(batch, loose, self.batcher, self.gate, self.history)


def _is_last(page: list[Any]) -> bool:
    """Whether dlt's paginator saw no page after this one (`rest_api` pages are `PageData`);
    anything else is taken as a whole, flushed at once."""
    return not isinstance(page, PageData) or not page.paginator.has_next_page


def _flush(
    batch: list[dict[str, Any]],
    loose: list[dict[str, Any]],
    batcher: ArrowBatcher,
    gate: RecordGate,
    history: str | None = None,
) -> Iterator[Any]:
    if refused := batcher.too_wide(batch + loose):
        for row in refused:
            reason = (
                f"field {PRIMARY_KEY!r}: past 64 bits, and the table's id column is a bigint;"
                f" declare {PRIMARY_KEY!r} as decimal in the schema file (schema infer does)"
            )
            gate.ledger.withhold(Rejection(gate.resource, row[PRIMARY_KEY], None, reason, row))
        batch = [r for r in batch if not _wide(r[PRIMARY_KEY])]
        loose = [r for r in loose if not _wide(r[PRIMARY_KEY])]
    # every row the current table gets, for the history too (history_rows copies them)
    versions = [_loadable(r) for r in [*batch, *loose]] if history else []
    table = batcher.table_of(batch) if batch else None
    if table is not None:
        yield table
    elif batch:
        loose = batch + loose
    if loose:
        yield [_loadable(r) for r in loose]
    if history and versions:
        yield history_rows(history, versions)


def _loadable(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as dlt's dict path can load it: an integer id past 64 bits as a decimal (dlt would
    type it as a bigint and fail writing it)."""
    return {**row, PRIMARY_KEY: Decimal(row[PRIMARY_KEY])} if _wide(row[PRIMARY_KEY]) else row
