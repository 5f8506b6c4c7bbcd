"""The declared schema in the warehouse: exact columns and types, neutral names, empty tables."""

import duckdb
import pyarrow as pa

from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import Column, crm_schema, declared_columns, rename_map
from crm_assets.source.types import arrow_type
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync

DLT_COLUMNS = {"_dlt_load_id": "VARCHAR", "_dlt_id": "VARCHAR"}


def _duckdb_types(columns: tuple[Column, ...]) -> dict[str, str]:
    """The types DuckDB gives the declared columns' arrow types (types.py): a table and the arrow
    batches loaded into it agree. A json column's arrow text goes to dlt's JSON column."""
    batch = pa.schema([pa.field(c.name, arrow_type(c)) for c in columns]).empty_table()
    with duckdb.connect() as connection:
        relation = connection.from_arrow(batch)
        types = dict(zip(relation.columns, map(str, relation.types), strict=True))
    return {c.name: "JSON" if c.data_type == "json" else types[c.name] for c in columns}


def _columns(warehouse: WarehouseResource, table: str) -> dict[str, tuple[str, str]]:
    query = (
        "select column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = 'crm' and table_name = ? order by ordinal_position"
    )
    with warehouse.connect() as connection:
        rows = connection.execute(query, [table]).fetchall()
    return {name: (data_type, nullable) for name, data_type, nullable in rows}


def test_every_resource_declares_a_non_null_bigint_id_and_timestamps() -> None:
    assert set(crm_schema().tables) == set(crm_resource_names())
    for name in crm_resource_names():
        columns = {c.name: c for c in declared_columns(name)}
        assert (columns["id"].data_type, columns["id"].nullable) == ("bigint", False)
        assert columns["updated_at"].data_type == "timestamp"
        assert columns["_deleted_at"].nullable


def test_tables_have_exactly_the_declared_columns_and_types_even_all_null_or_empty(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 120, "contact": 30, "lead": 0, "opportunity": 40})

    assert sync(sandbox).success

    for name in crm_resource_names():
        expected = _duckdb_types(declared_columns(name))
        actual = _columns(warehouse, name)
        assert {column: t for column, (t, _) in actual.items()} == expected | DLT_COLUMNS, name
        assert actual["id"][1] == "NO"
    actual_lead = _columns(warehouse, "lead")
    with warehouse.connect() as connection:
        parents = connection.execute(
            "select count(*), count(parent_account_id) from crm.account"
        ).fetchone()
        leads = connection.execute("select count(*) from crm.lead").fetchone()[0]
    assert parents == (120, 0)  # all-null, yet a BIGINT column
    assert leads == 0  # the empty resource still has its typed table

    sandbox.store.insert("lead", {"status": "new"})
    assert sync(sandbox, "crm/lead").success
    assert _columns(warehouse, "lead") == actual_lead
    with warehouse.connect() as connection:
        assert connection.execute("select count(*) from crm.lead").fetchone()[0] == 1


def test_the_branded_field_lands_under_its_neutral_name_only(
    sandbox: object, sync: Sync, warehouse: WarehouseResource
) -> None:
    assert rename_map("account") == {"acme_owner_id": "owner_id"}
    assert sync(sandbox).success

    for name in crm_resource_names():
        assert "owner_id" in _columns(warehouse, name)
        assert not any("acme" in column for column in _columns(warehouse, name))
    expected = {r["id"]: r["acme_owner_id"] for r in sandbox.store.records("contact")}
    with warehouse.connect() as connection:
        loaded = dict(connection.execute("select id, owner_id from crm.contact").fetchall())
    assert loaded == expected
