"""The production instance config (`deploy/dagster.yaml`) against a live PostgreSQL.

An instance built from that file, in a database of its own, runs a sync; its runs and events
are then read back from Postgres, by Dagster and by plain SQL. Needs CRM_TEST_POSTGRES_URL.
"""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg2
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_dlt import DagsterDltResource
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.translator import asset_key
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory
from crm_assets_tests.warehouse.test_destinations import POSTGRES_URL, needs_postgres

DEPLOY_CONFIG = Path(__file__).parents[1] / "deploy" / "dagster.yaml"


def _autocommit(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True  # CREATE / DROP DATABASE refuse a transaction
    try:
        connection.cursor().execute(statement)
    finally:
        connection.close()


@pytest.fixture
def dagster_database() -> Iterator[str]:
    """A database of its own on the live server for Dagster's storage; dropped afterwards."""
    assert POSTGRES_URL
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    _autocommit(POSTGRES_URL, f"create database {name}")
    # SQLAlchemy 2.1 takes psycopg 3 for a plain postgresql:// URL; dagster-postgres needs psycopg2
    url = urlsplit(POSTGRES_URL)._replace(scheme="postgresql+psycopg2", path=f"/{name}")
    yield urlunsplit(url)
    _autocommit(POSTGRES_URL, f"drop database {name} with (force)")


@needs_postgres
def test_the_deploy_instance_keeps_runs_and_events_in_postgres(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    dagster_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_database)
    sandbox = make_sandbox(120)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        result = dg.materialize(
            [crm_assets_def],
            instance=instance,
            resources={
                "dlt": DagsterDltResource(),
                "crm_api": CrmApiResource(base_url=sandbox.base_url, api_key=TEST_KEY),
                "warehouse": WarehouseResource(duckdb_path=str(tmp_path / "warehouse.duckdb")),
            },
        )
        assert result.success
        materialization = instance.get_latest_materialization_event(asset_key("contact"))

    assert materialization is not None
    assert materialization.run_id == result.run_id
    connection = psycopg2.connect(dagster_database.replace("+psycopg2", ""))
    try:
        cursor = connection.cursor()
        cursor.execute("select status from runs where run_id = %s", [result.run_id])
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
            [result.run_id, "ASSET_MATERIALIZATION"],
        )
        assert cursor.fetchone() == (4,)  # one per CRM table
    finally:
        connection.close()
