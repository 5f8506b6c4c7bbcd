"""The warehouse by destination: formats, names, secrets. The end-to-end tests run on every
destination through the `warehouse` fixture (`on_each_destination` in conftest)."""

import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dlt import DagsterDltResource

import crm_assets.defs.crm.assets as sync_assets
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.destinations import DESTINATIONS
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory
from crm_sandbox import SandboxServer


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
