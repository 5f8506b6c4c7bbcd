"""Gated rows to arrow batches: declared types, undeclared fields as dlt would type them, and
the batches that must stay dicts."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dlt
import pyarrow as pa
import pytest

from crm_assets.source.batches import ArrowBatcher
from crm_assets.source.ledger import ResourceLedger
from crm_assets.source.records import RecordGate
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records


def _gated(*records: dict[str, Any]) -> tuple[ArrowBatcher, list[dict[str, Any] | None]]:
    gate = RecordGate("account", ResourceLedger("account"))
    batcher = ArrowBatcher("account", gate.columns)
    rows = [gate(record) for record in records]
    # a row arrow cannot carry stands as None: the dict path takes it
    return batcher, [row if batcher.arrow_ready(row) else None for row in rows if row is not None]


def _account(record_id: int | str = 1, **fields: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "name": "Acme",
        "annual_revenue": "1234.50",
        "employee_count": "12",
        "created_at": "2024-01-02T03:04:05Z",
        "tags": ["a", "b"],
        **fields,
    }


def test_declared_columns_take_their_declared_arrow_types() -> None:
    batcher, rows = _gated(_account(1), _account(2))

    table = batcher.table_of(rows)  # type: ignore[arg-type]

    assert table is not None
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("annual_revenue").type == pa.decimal128(38, 9)
    assert table.column("annual_revenue").to_pylist() == [Decimal("1234.5")] * 2
    assert table.column("employee_count").to_pylist() == [12, 12]
    assert table.column("created_at").to_pylist()[0] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert table.column("tags").to_pylist() == ['["a","b"]'] * 2  # JSON text, as dlt writes it
    assert "_dlt_load_id" not in table.column_names  # dlt adds it as it extracts the batch
    assert len(set(table.column("_dlt_id").to_pylist())) == 2


def test_undeclared_scalars_come_along_and_objects_go_to_dlt() -> None:
    batcher, rows = _gated(
        _account(1, hs_owner_id=15, region="emea"), _account(2, hs_owner_id=None, region="apac")
    )

    table = batcher.table_of(rows)  # type: ignore[arg-type]

    assert table is not None
    assert table.column("hs_owner_id").to_pylist() == [15, None]
    assert table.column("region").to_pylist() == ["emea", "apac"]
    _, nested = _gated(_account(1, meta={"regionCode": "emea"}))
    assert nested == [None]  # dlt flattens it into meta__region_code


def test_what_only_dlt_can_type_stays_dicts() -> None:
    # A list (a nested table), one field with two types, text dlt would read as a timestamp,
    # ids of two types: dlt's own path decides those, as before.
    _, listed = _gated(_account(1, notes=["x"]))
    assert listed == [None]
    for records in (
        (_account(1, custom=1), _account(2, custom="one")),
        (_account(1, seen="2024-05-01T00:00:00Z"),),
        (_account(1), _account("2")),
        (_account(1, annualRevenue="5"),),  # dlt would name it like a declared column
    ):
        batcher, rows = _gated(*records)
        assert batcher.table_of(rows) is None  # type: ignore[arg-type]


def test_string_ids_make_a_text_id_column() -> None:
    batcher, rows = _gated(_account("001A"), _account("0042"))

    table = batcher.table_of(rows)  # type: ignore[arg-type]

    assert table is not None
    assert table.column("id").to_pylist() == ["001A", "0042"]


def test_an_empty_resource_still_gets_every_declared_column() -> None:
    batcher, _ = _gated()

    empty = batcher.empty("bigint")

    assert empty.num_rows == 0
    assert {"id", "annual_revenue", "tags", "_deleted_at", "_dlt_id"} <= set(empty.schema.names)


def test_arrow_and_dict_rows_land_in_one_table_exactly(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    # Most records take the arrow path; those with an undeclared list go through dlt's own
    # normaliser (a nested table); undeclared scalars and objects ride along either way.
    sandbox = make_sandbox(300)
    store = sandbox.store
    for record_id in (3, 150):
        store.update("account", record_id, {"notes": ["call back", "vip"]})
    for record_id in range(1, 301, 7):
        store.update("account", record_id, {"external_ref": record_id * 10, "extra": {"tier": 2}})

    assert sync(sandbox, "crm/account").success

    assert_same_records(store.records("account"), warehouse_records(warehouse, "account"))
    with warehouse.connect() as connection:
        load_ids, dlt_ids, rows = connection.execute(
            "select count(distinct _dlt_load_id), count(distinct _dlt_id), count(*)"
            " from crm.account"
        ).fetchone()
    assert (load_ids, dlt_ids, rows) == (1, 300, 300)


def test_a_load_that_fails_leaves_no_quarantine_rows_and_the_rerun_loses_none(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Quarantine rows travel in the sync's own load package: a failure after extract and
    # normalize (here: the load step itself) leaves neither them nor the rows they belong to.
    sandbox = make_sandbox(120)
    assert sync(sandbox, "crm/opportunity").success
    last_good = {r["id"]: r["name"] for r in sandbox.store.records("opportunity")}[5]
    sandbox.store.update("opportunity", 5, {"amount": "n/a", "name": "Changed deal"})

    def broken_load(*args: object, **kwargs: object) -> None:
        raise RuntimeError("worker lost between normalize and load")

    with monkeypatch.context() as patch:
        patch.setattr(dlt.Pipeline, "load", broken_load)
        assert not sync(sandbox, "crm/opportunity").success

    with warehouse.connect() as connection:
        tables = {r[0] for r in connection.sql("select table_name from duckdb_tables()").fetchall()}
        name = connection.execute("select name from crm.opportunity where id = 5").fetchone()
    assert "_quarantine" not in tables
    assert name == (last_good,)

    assert sync(sandbox, "crm/opportunity").success
    with warehouse.connect() as connection:
        quarantined = connection.sql(
            "select record_id, field from crm._quarantine order by record_id"
        ).fetchall()
        name = connection.execute("select name from crm.opportunity where id = 5").fetchone()
    assert quarantined == [("5", "amount")]  # once: the failed run's package left nothing
    assert name == ("Changed deal",)


def test_integer_ids_past_64_bits_make_a_whole_decimal_id_column() -> None:
    big = 18_000_000_000_000_010_003
    batcher, rows = _gated(_account(big), _account(5))

    table = batcher.table_of([r for r in rows if r])

    assert table is not None
    assert table.schema.field("id").type == pa.decimal128(38, 0)
    assert table.column("id").to_pylist() == [Decimal(big), Decimal(5)]
