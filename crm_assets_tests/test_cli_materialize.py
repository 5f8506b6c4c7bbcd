"""The documented entry point: `dagster asset materialize` configured only by env vars. Its run on
PostgreSQL at DEBUG is the deploy test's four launches (test_deploy.py), whose Dagster storage is
searched for secrets too."""

import re
from pathlib import Path

import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, cli_materialize
from crm_assets_tests.support import (
    AWKWARD_KEY,
    DEBUG_EVERYWHERE,
    files_containing,
    secret_forms,
)
from crm_assets_tests.warehouse_rows import assert_tables_match
from crm_sandbox import SandboxServer
from crm_sandbox.runs import cli_env, prepare_dagster_home

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, base_url: str, key: str) -> dict[str, str]:
    return cli_env(
        dagster_home=prepare_dagster_home(tmp_path / "dagster_home"),
        base_url=base_url,
        api_key=key,
        duckdb_path=tmp_path / "warehouse.duckdb",
    )


@pytest.mark.long_running(20)
def test_cli_run_with_a_wrong_key_fails_clearly_without_the_key(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    wrong = "wrong-key-5c2b19aa"

    done = cli_materialize(_env(tmp_path, sandbox.base_url, wrong))

    assert done.returncode != 0
    output = done.stdout + done.stderr
    # the four resources page in parallel: whichever asks first reports the 401
    assert re.search(
        r"GET /v1/(account|contact|lead|opportunity) at offset 0 answered HTTP 401", output
    )
    assert wrong not in output
    assert files_containing(tmp_path / "dagster_home", wrong) == []
    assert files_containing(tmp_path / "dlt_pipelines", wrong) == []


@pytest.mark.long_running(25)
def test_an_env_configured_run_syncs_every_table_and_even_at_debug_stores_no_secret(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(150, api_key=AWKWARD_KEY)
    env = _env(tmp_path, sandbox.base_url, AWKWARD_KEY)
    home = Path(env["DAGSTER_HOME"])
    with (home / "dagster.yaml").open("a") as config:
        config.write(DEBUG_EVERYWHERE)

    done = cli_materialize(env)

    assert done.returncode == 0, done.stderr[-3000:]
    warehouse = WarehouseResource(duckdb_path=env["CRM_DUCKDB_PATH"])
    assert_tables_match(sandbox.store, warehouse)
    assert files_containing(home, "GET /v1/lead?"), "no request line captured: proves nothing"
    for secret in secret_forms(AWKWARD_KEY, warehouse):
        assert secret not in done.stdout + done.stderr
        for where in (home, warehouse.pipelines_dir, warehouse.path):
            assert files_containing(where, secret) == [], (where, secret)
