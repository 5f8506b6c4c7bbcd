"""Two launches against one DuckDB file queue on the `crm_warehouse` pool instead of colliding."""

import subprocess

import dagster as dg
import duckdb
import pytest

from crm_assets.source.contract import crm_resource_names
from crm_assets_tests.conftest import REPO, SandboxFactory, sandbox_cli_env
from crm_sandbox.runs import dagster_command


def _step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    events = {
        e.dagster_event.event_type_value: e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.is_step_event
    }
    return events["STEP_START"], events["STEP_SUCCESS"]


@pytest.mark.long_running(60)
def test_two_concurrent_cli_materializations_both_succeed_one_after_the_other(
    make_sandbox: SandboxFactory, tmp_path
) -> None:
    sandbox = make_sandbox(600, latency_ms=15)  # ~24 requests per run: long enough to overlap
    env = sandbox_cli_env(tmp_path, sandbox)
    home = env["DAGSTER_HOME"]
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
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        for name in crm_resource_names():
            query = f"select count(*), count(distinct id) from crm.{name}"
            assert connection.execute(query).fetchone() == (600, 600)
