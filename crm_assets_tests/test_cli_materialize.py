"""The documented entry point: `dagster asset materialize` configured only by env vars."""

import re
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import cli_materialize, on_each_destination, warehouse_env
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import CrmStore, SandboxServer
from crm_sandbox.runs import cli_env, prepare_dagster_home

pytestmark = pytest.mark.e2e


def _materialize(
    tmp_path: Path,
    base_url: str,
    key: str,
    config: Path | None = None,
    warehouse: WarehouseResource | None = None,
) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        dagster_home=prepare_dagster_home(tmp_path / "dagster_home", config),
        base_url=base_url,
        api_key=key,
        duckdb_path=tmp_path / "warehouse.duckdb",
    )
    if warehouse is not None:
        env |= warehouse_env(warehouse)
    return cli_materialize(env)


def _stored_text(home: Path, key: str) -> list[Path]:
    """Files under `home` (or `home` itself) that contain `key`."""
    files = [home] if home.is_file() else [p for p in home.rglob("*") if p.is_file()]
    return [p for p in files if key.encode() in p.read_bytes()]


@pytest.mark.long_running(20)
def test_cli_run_with_a_wrong_key_fails_clearly_without_the_key(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    wrong = "wrong-key-5c2b19aa"

    done = _materialize(tmp_path, sandbox.base_url, wrong)

    assert done.returncode != 0
    output = done.stdout + done.stderr
    # the four resources page in parallel: whichever asks first reports the 401
    assert re.search(
        r"GET /v1/(account|contact|lead|opportunity) at offset 0 answered HTTP 401", output
    )
    assert wrong not in output
    assert _stored_text(tmp_path / "dagster_home", wrong) == []
    assert _stored_text(tmp_path / "dlt_pipelines", wrong) == []


DEBUG_EVERYWHERE = """\
telemetry:
  enabled: false
python_logs:
  python_log_level: DEBUG
  managed_python_loggers: [root, urllib3, requests, dlt, crm_assets]
"""


@pytest.mark.long_running(25)
@on_each_destination
def test_an_env_configured_run_syncs_every_table_and_even_at_debug_stores_no_secret(
    tmp_path: Path, warehouse: WarehouseResource
) -> None:
    # Dagster's documented way to see HTTP traffic: urllib3 and friends captured at DEBUG into
    # the event log and compute logs. Every request line then carries the key in its query.
    config = tmp_path / "dagster.yaml"
    config.write_text(DEBUG_EVERYWHERE)
    home = tmp_path / "dagster_home"
    key = "k3y/with+chars=and spaces"  # raw, %-encoded and +-encoded all differ
    with SandboxServer(CrmStore(150), api_key=key) as sandbox:
        done = _materialize(tmp_path, sandbox.base_url, key, config, warehouse)
        upstream = {name: sandbox.store.records(name) for name in crm_resource_names()}

    assert done.returncode == 0, done.stderr[-3000:]
    for name, records in upstream.items():
        assert_same_records(records, warehouse_records(warehouse, name))
    captured = [p for p in home.rglob("*") if p.is_file() and b"GET /v1/lead?" in p.read_bytes()]
    assert captured, "urllib3's request lines were not captured: the test proves nothing"
    for secret in {key, quote(key), quote_plus(key), *warehouse.secrets()}:
        assert secret not in done.stdout + done.stderr
        for where in (home, warehouse.pipelines_dir, tmp_path / "warehouse.duckdb"):
            assert _stored_text(where, secret) == [], (where, secret)
