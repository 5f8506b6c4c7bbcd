"""The documented entry point, `dagster asset materialize` configured only by env vars, with a wrong
key. Its runs that succeed, at DEBUG on both destinations, are in test_one_writer.py (DuckDB) and
test_deploy.py (PostgreSQL)."""

import re
from pathlib import Path

import pytest

from crm_assets_tests.conftest import cli_materialize
from crm_assets_tests.support import files_containing
from crm_sandbox import SandboxServer
from crm_sandbox.runs import cli_env, prepare_dagster_home

pytestmark = pytest.mark.e2e


@pytest.mark.long_running(20)
def test_cli_run_with_a_wrong_key_fails_clearly_without_the_key(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    wrong = "wrong-key-5c2b19aa"
    env = cli_env(
        dagster_home=prepare_dagster_home(tmp_path / "dagster_home"),
        base_url=sandbox.base_url,
        api_key=wrong,
        duckdb_path=tmp_path / "warehouse.duckdb",
    )

    done = cli_materialize(env)

    assert done.returncode != 0
    output = done.stdout + done.stderr
    # the four resources page in parallel: whichever asks first reports the 401
    assert re.search(
        r"GET /v1/(account|contact|lead|opportunity) at offset 0 answered HTTP 401", output
    )
    assert wrong not in output
    assert files_containing(tmp_path / "dagster_home", wrong) == []
    assert files_containing(tmp_path / "dlt_pipelines", wrong) == []
