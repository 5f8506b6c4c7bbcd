"""Two `dagster asset materialize` launches against one DuckDB file, configured only by env vars as
`make dev` has them: they queue on the `crm_warehouse` pool instead of colliding, each syncs every
table, and even with every logger at DEBUG no file they leave holds a secret."""

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import REPO, SandboxFactory, sandbox_cli_env
from crm_assets_tests.support import (
    AWKWARD_KEY,
    DEBUG_EVERYWHERE,
    files_containing,
    secret_forms,
)
from crm_assets_tests.warehouse_rows import assert_tables_match
from crm_sandbox.runs import dagster_command

pytestmark = pytest.mark.e2e


def _step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    events = {
        e.dagster_event.event_type_value: e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.is_step_event
    }
    return events["STEP_START"], events["STEP_SUCCESS"]


@pytest.mark.long_running(60)
def test_two_concurrent_cli_runs_queue_sync_every_table_and_store_no_secret_even_at_debug(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # ~24 requests per run: long enough to overlap
    sandbox = make_sandbox(600, api_key=AWKWARD_KEY, latency_ms=15)
    env = sandbox_cli_env(tmp_path, sandbox)
    home = Path(env["DAGSTER_HOME"])
    with (home / "dagster.yaml").open("a") as config:
        config.write(DEBUG_EVERYWHERE)
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create the instance's storage once, as a long-lived deployment has it
    launches = [
        subprocess.Popen(
            dagster_command("asset", "materialize", "--select", "group:crm"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [launch.communicate(timeout=300)[0] for launch in launches]

    failed = [
        out[-4000:] for launch, out in zip(launches, outputs, strict=True) if launch.returncode
    ]
    assert not failed, failed
    assert any("blocked by limit for pool crm_warehouse" in output for output in outputs)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        first, second = sorted(_step_window(instance, run.run_id) for run in runs)
    assert len(runs) == 2
    assert first[1] <= second[0]  # the second step started after the first finished
    warehouse = WarehouseResource(duckdb_path=env["CRM_DUCKDB_PATH"])
    assert_tables_match(sandbox.store, warehouse)
    assert files_containing(home, "GET /v1/lead?"), "no request line captured: proves nothing"
    for secret in secret_forms(AWKWARD_KEY, warehouse):
        assert not any(secret in output for output in outputs)
        for where in (home, warehouse.pipelines_dir, warehouse.path):
            assert files_containing(where, secret) == [], (where, secret)
