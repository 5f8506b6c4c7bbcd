"""End to end: the sandbox CRM over loopback, dlt, Dagster, and a real warehouse: a DuckDB file,
and (`on_each_destination`) a live PostgreSQL."""

from urllib.parse import urlsplit

import dagster as dg

from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync, on_each_destination
from crm_assets_tests.support import failure_message
from crm_assets_tests.warehouse_rows import assert_tables_match, warehouse_records
from crm_sandbox import SandboxServer


def _count(warehouse: WarehouseResource, table: str) -> tuple[int, int]:
    with warehouse.sql_client() as client:
        name = client.make_qualified_table_name(table)
        (row,) = client.execute_sql(f"select count(*), count(distinct id) from {name}")
    return tuple(row)


def _tables(warehouse: WarehouseResource) -> set[str]:
    with warehouse.sql_client() as client:
        rows = client.execute_sql(
            "select table_name from information_schema.tables where table_schema = %s",
            warehouse.dataset_name,
        )
    return {row[0] for row in rows}


@on_each_destination
def test_a_full_sync_matches_the_crm_record_for_record_and_its_materializations_say_so(
    sandbox: SandboxServer, sync: Sync, warehouse: WarehouseResource
) -> None:
    result = sync(sandbox)

    assert result.success
    assert_tables_match(sandbox.store, warehouse)
    for name in crm_resource_names():
        total = sandbox.store.total(name)
        assert _count(warehouse, name) == (total, total)
    events = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert set(events) == {dg.AssetKey(["crm", name]) for name in crm_resource_names()}
    account = events[dg.AssetKey(["crm", "account"])]
    assert account["rows_loaded"].value == sandbox.store.total("account")
    assert account["dagster/row_count"].value == sandbox.store.total("account")
    # as SQL names it: the DuckDB file's catalog, or the Postgres database
    database = "warehouse" if warehouse.is_duckdb else urlsplit(warehouse.postgres_url).path[1:]
    table = f"{database}.{warehouse.dataset_name}.account"
    assert account["dagster/table_name"].value == table
    assert not {"jobs", "first_run", "destination_type", "started_at"} & set(account)
    columns = {c.name: c.type for c in account["dagster/column_schema"].schema.columns}
    assert columns["id"] == "bigint"
    assert columns["annual_revenue"] == "decimal(38,9)"
    assert {"name", "status", "updated_at", "address__city"} <= set(columns)
    assert list(columns)[-2:] == ["_dlt_load_id", "_dlt_id"]  # in every table, as before a load


@on_each_destination
def test_second_sync_merges_updates_and_inserts_without_duplicates(
    sandbox: SandboxServer, sync: Sync, warehouse: WarehouseResource
) -> None:
    assert sync(sandbox).success
    sandbox.store.update("account", 7, {"name": "Renamed Corp", "status": "churned"})
    sandbox.store.update("opportunity", 3, {"amount": 1234.5, "stage": "closed_won"})
    inserted = sandbox.store.insert("contact", {"first_name": "New", "last_name": "Person"})

    assert sync(sandbox).success

    assert_tables_match(sandbox.store, warehouse)
    for name in crm_resource_names():
        total = sandbox.store.total(name)
        assert _count(warehouse, name) == (total, total)
    account = {r["id"]: r for r in warehouse_records(warehouse, "account")}[7]
    assert (account["name"], account["status"]) == ("Renamed Corp", "churned")
    assert warehouse_records(warehouse, "contact")[-1]["id"] == inserted["id"]


@on_each_destination
def test_subset_materialization_loads_only_the_selected_table(
    sandbox: SandboxServer, sync: Sync, warehouse: WarehouseResource
) -> None:
    result = sync(sandbox, selection="crm/lead")

    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey(["crm", "lead"])}
    tables = _tables(warehouse)
    assert {"lead"} <= tables
    assert not tables & {"account", "contact", "opportunity"}
    assert {r.resource for r in sandbox.faults.log} == {"lead"}


@on_each_destination
def test_sync_of_an_unchanged_crm_changes_nothing(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox).success
    before = warehouse_records(warehouse, "account")

    assert sync(sandbox).success

    assert warehouse_records(warehouse, "account") == before
    assert _count(warehouse, "account") == (120, 120)
    assert TEST_KEY not in str(sandbox.faults.log)


def test_sync_through_random_transient_faults_and_a_page_cap_is_exact(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(
        {"account": 420, "contact": 380, "lead": 210, "opportunity": 333},
        transient_fault_rate=0.25,
        retry_after_s=0,
        max_page_size=100,
        seed=3,
    )

    result = sync(sandbox, page_size=250, backoff_factor=0.01)

    assert result.success
    failed = [r for r in sandbox.faults.log if r.status != 200]
    assert len(failed) >= 5  # the faults really happened
    assert_tables_match(sandbox.store, warehouse)


def test_a_locked_warehouse_fails_with_the_reason(
    sandbox: SandboxServer, sync: Sync, warehouse: WarehouseResource
) -> None:
    assert sync(sandbox, selection="crm/lead").success
    with warehouse.connect(read_only=False) as holder:
        holder.execute("begin transaction; delete from crm.lead; ")
        result = sync(sandbox, selection="crm/lead")
        holder.execute("rollback")

    assert not result.success
    message = failure_message(result)
    assert "CRM sync failed in dlt step" in message
    assert TEST_KEY not in message
    assert _count(warehouse, "lead") == (250, 250)
