"""The warehouse by destination: DuckDB by default, Postgres against a live server.

The Postgres tests need CRM_TEST_POSTGRES_URL (`.ci/postgres start` prints one, and `.ci/run`
sets it); without it they are skipped, and pytest says so.
"""

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dlt import DagsterDltResource

import crm_assets.defs.crm.assets as sync_assets
from crm_assets.defs.analytics.assets import build_account_summary_asset
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.config import CrmConfigError
from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.destinations import DESTINATIONS
from crm_assets.warehouse.models import ACCOUNT_SUMMARY_TABLE
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer

POSTGRES_URL = os.environ.get("CRM_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="no PostgreSQL server: set CRM_TEST_POSTGRES_URL (`.ci/postgres start` prints one)",
)


def test_each_destination_has_its_measured_loader_format(tmp_path: Path) -> None:
    assert {name: d.loader_file_format for name, d in DESTINATIONS.items()} == {
        "duckdb": "parquet",
        "postgres": "csv",
    }
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "w.duckdb"))
    assert (warehouse.destination, warehouse.file_format) == ("duckdb", "parquet")


def test_an_unknown_destination_is_refused_naming_the_variable(tmp_path: Path) -> None:
    warehouse = WarehouseResource(destination="oracle", duckdb_path=str(tmp_path / "w.duckdb"))
    with pytest.raises(CrmConfigError, match="CRM_DESTINATION") as raised:
        warehouse.dlt_pipeline()
    assert "'oracle' is not one of duckdb, postgres" in str(raised.value)


def test_the_warehouse_password_is_masked_in_what_a_sync_logs(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "pg-s3cret/with+chars"  # URL-encoded in the URL, as a user would write it
    warehouse = WarehouseResource(
        duckdb_path=str(tmp_path / "warehouse.duckdb"),
        postgres_url="postgresql://crm:pg-s3cret%2Fwith%2Bchars@db.example:5432/crm",
    )
    assert warehouse.secrets() == ["pg-s3cret%2Fwith%2Bchars", password]
    # Something inside the sync logs the password in both forms (a driver's debug line, say).
    counts = sync_assets.row_counts

    def row_counts_and_a_leaky_log(client: Any, table: str) -> tuple[int, int]:
        logging.getLogger("some.driver").warning("dsn password=%s", password)
        logging.getLogger("some.driver").warning("url crm:%s@db", "pg-s3cret%2Fwith%2Bchars")
        return counts(client, table)

    monkeypatch.setattr(sync_assets, "row_counts", row_counts_and_a_leaky_log)
    with caplog.at_level(logging.WARNING, logger="some.driver"):
        result = _materialize([crm_assets_def], make_sandbox(20), warehouse)

    assert result.success
    assert "dsn password=***" in caplog.text
    assert "url crm:***@db" in caplog.text
    assert password not in caplog.text
    assert "pg-s3cret%2F" not in caplog.text


@pytest.fixture
def postgres_warehouse(tmp_path: Path) -> WarehouseResource:
    """A schema of its own on the live server, for this test only (the pipeline's local state
    sits in tmp_path)."""
    return WarehouseResource(
        destination="postgres",
        postgres_url=POSTGRES_URL,
        duckdb_path=str(tmp_path / "state" / "unused.duckdb"),
        dataset_name=f"crm_{uuid.uuid4().hex[:10]}",
    )


def _materialize(
    assets: list[Any],
    sandbox: SandboxServer,
    warehouse: WarehouseResource,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources={
            "dlt": DagsterDltResource(),
            "crm_api": CrmApiResource(base_url=sandbox.base_url, api_key=TEST_KEY),
            "warehouse": warehouse,
        },
        raise_on_error=raise_on_error,
    )


@needs_postgres
def test_a_sync_into_postgres_is_exact_and_merges_changes(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    postgres_warehouse: WarehouseResource,
) -> None:
    sandbox = make_sandbox(250)
    assets = [crm_assets_def]
    assert _materialize(assets, sandbox, postgres_warehouse).success
    sandbox.store.update("contact", 5, {"first_name": "Changed"})
    sandbox.store.insert("lead", {"first_name": "New"})

    result = _materialize(assets, sandbox, postgres_warehouse)

    assert result.success
    for table in crm_resource_names():
        expected = sandbox.store.records(table)
        assert_same_records(expected, warehouse_records(postgres_warehouse, table))
    with postgres_warehouse.sql_client() as client:
        (changed,) = client.execute_sql(
            f"select first_name from {client.make_qualified_table_name('contact')} where id = 5"
        )
    assert changed == ("Changed",)


@needs_postgres
def test_checks_deletions_and_the_model_run_on_postgres(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    table_checks: dg.AssetChecksDefinition,
    postgres_warehouse: WarehouseResource,
) -> None:
    sandbox = make_sandbox(120)
    job = [
        crm_assets_def,
        table_checks,
        build_account_summary_asset(warehouse=WarehouseResource(destination="postgres")),
    ]
    assert _materialize(job, sandbox, postgres_warehouse).success
    sandbox.store.delete("account", 4)

    result = _materialize(job, sandbox, postgres_warehouse)

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 20  # 5 checks on each of the four tables
    failed = {(e.asset_key.path[-1], e.check_name) for e in evaluations if not e.passed}
    assert failed == {("account", "gone_upstream")}  # the deleted account, as on DuckDB
    with postgres_warehouse.sql_client() as client:
        table = client.make_qualified_table_name("account")
        (marked,) = client.execute_sql(f"select id from {table} where _deleted_at is not null")
        (summary,) = client.execute_sql(f"select count(*) from {ACCOUNT_SUMMARY_TABLE}")
    assert marked == (4,)
    assert summary == (119,)  # live accounts only
