"""The warehouse resource: where the DuckDB file and dlt's state live, names DuckDB refuses, and
waiting for a file another process holds."""

import subprocess
import sys
from pathlib import Path

import pytest

from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.resource import WarehouseBusyError, WarehouseResource


@pytest.mark.parametrize("stem", ["crm", "analytics"])
def test_duckdb_file_named_like_a_schema_is_refused(tmp_path: Path, stem: str) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / f"{stem}.duckdb"))
    with pytest.raises(CrmConfigError, match=f"same stem as schema '{stem}'"):
        warehouse.dlt_pipeline("crm_api")


def test_pipeline_state_lives_next_to_the_warehouse(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "nested" / "wh.duckdb"))
    pipeline = warehouse.dlt_pipeline("crm_api")
    assert Path(pipeline.pipelines_dir) == tmp_path / "nested" / "dlt_pipelines"
    assert pipeline.dataset_name == "crm"


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open for writing, as a straggling step would."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(float(sys.argv[2])); c.close(); print('released', flush=True)",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_duckdb_file_is_waited_for(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "wh.duckdb"), duckdb_lock_wait_s=30)
    holder = _hold_lock(warehouse.path, 1.0)

    with warehouse.sql_client() as client:
        assert client.execute_sql("select 42")[0][0] == 42
        # we only got in after the other process let go
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "released"
    holder.wait(timeout=10)


def test_a_file_held_too_long_fails_naming_file_and_setting(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "wh.duckdb"), duckdb_lock_wait_s=0.3)
    holder = _hold_lock(warehouse.path, 30)
    try:
        with pytest.raises(WarehouseBusyError) as raised, warehouse.connect(read_only=False):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
    message = str(raised.value)
    assert str(warehouse.path) in message
    assert "another process" in message
    assert "duckdb_lock_wait_s" in message
    assert f"PID {holder.pid}" in message


def test_connect_on_postgres_points_to_sql_client_and_blames_no_setting() -> None:
    warehouse = WarehouseResource(destination="postgres", postgres_url="postgresql://h/db")
    with pytest.raises(NotImplementedError, match="use sql_client"), warehouse.connect():
        pass
