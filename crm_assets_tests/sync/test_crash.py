"""`kill -9` of the sync job at a seeded point of each phase, then one normal run: exact again
(on DuckDB in every phase; on PostgreSQL mid-load, right after the quarantine rows, and in the
deletion marks).

The job runs in a child process (`crash_child.py`) that kills itself mid-extract, -normalize,
-load, -deletion marks, -checks or -model; the data changes upstream before and after the
crash. One normal run must then leave exactly the API's snapshot: no duplicates, nothing missing,
`_deleted_at` right, the quarantine complete, no load package left behind, and the history of
`crash_child.HISTORY` consistent with its table. CRM_TEST_CRASH_SEED
picks other points (`make soak` goes through many).
"""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    TEST_KEY,
    SandboxFactory,
    materialize,
    shell_settings,
)
from crm_assets_tests.support import failure_message
from crm_assets_tests.sync.crash import SET_ASIDE, UNFIT_RECORD, differences, run_job
from crm_assets_tests.sync.crash_child import PHASES, job_definitions
from crm_assets_tests.warehouse_rows import warehouse_records
from crm_sandbox import CrmStore, FaultPlan, SandboxServer

# One pytest-xdist worker runs them all (`--dist loadgroup`): one process importing the job for
# the children to fork from, and one first sync to copy, instead of one in every worker.
pytestmark = pytest.mark.xdist_group("crash")
SEED = int(os.environ.get("CRM_TEST_CRASH_SEED", "0"))
RECORDS = 300
AFTER_THE_LOAD = ("post_load", "checks", "model")


def _upstream(make: Callable[[int], SandboxServer]) -> SandboxServer:
    sandbox = make(RECORDS)
    sandbox.store.put_raw("opportunity", UNFIT_RECORD)
    return sandbox


@pytest.fixture(scope="module")
def first_synced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A folder holding the warehouse and dlt's state after one good run of the job against
    `_upstream`'s records, made once: each phase starts from a copy of it."""
    folder = tmp_path_factory.mktemp("first_synced")
    warehouse = WarehouseResource(duckdb_path=str(folder / "warehouse.duckdb"))
    sandbox = _upstream(lambda n: SandboxServer(CrmStore(n), FaultPlan(), TEST_KEY).start())
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in shell_settings(os.environ):  # as each test's own isolation does
                env.delenv(name)
            result = materialize(job_definitions(), sandbox, warehouse)
    finally:
        sandbox.stop()
    assert result.success, failure_message(result)
    return folder


def _crash_then_repair(sandbox: SandboxServer, warehouse: WarehouseResource, phase: str) -> None:
    """From the first sync's state: changes, a kill in `phase`, changes, one normal run; then
    the warehouse must be exact."""
    sandbox.store.update("contact", 7, {"first_name": "Before the crash"})
    sandbox.store.delete("lead", 11)
    sandbox.store.insert("account", {"name": "New before the crash"})

    crashed = run_job(sandbox, warehouse, phase, SEED)

    where = crashed.stdout.splitlines()[0] if crashed.stdout else crashed.stderr[-2000:]
    assert crashed.returncode == -9, f"not killed ({where}, exit {crashed.returncode})"
    if phase in AFTER_THE_LOAD:  # the child ran the job this far, into this warehouse
        names = {r["name"] for r in warehouse_records(warehouse, "account")}
        assert "New before the crash" in names, f"not loaded before the kill ({where})"
    sandbox.store.update("account", 2, {"name": "After the crash"})
    sandbox.store.delete("contact", 13)
    repaired = materialize(job_definitions(), sandbox, warehouse)
    assert repaired.success, f"the run after {where} (seed {SEED}) failed"
    assert differences(sandbox, warehouse, [SET_ASIDE]) == [], f"after {where} (seed {SEED})"
    with warehouse.sql_client() as client:
        lead, contact = (client.make_qualified_table_name(t) for t in ("lead", "contact"))
        marked = client.execute_sql(
            f"select 'lead', id from {lead} where _deleted_at is not null union all"
            f" select 'contact', id from {contact} where _deleted_at is not null"
        )
    assert sorted((t, int(i)) for t, i in marked) == [("contact", 13), ("lead", 11)]


@pytest.mark.long_running(25)
@pytest.mark.parametrize("phase", PHASES)
def test_one_run_after_a_kill_in_any_phase_leaves_the_exact_snapshot(
    make_sandbox: SandboxFactory,
    first_synced: Path,
    warehouse: WarehouseResource,
    phase: str,
) -> None:
    sandbox = _upstream(make_sandbox)  # the records of the first sync, which
    shutil.copytree(first_synced, warehouse.path.parent, dirs_exist_ok=True)  # left this
    _crash_then_repair(sandbox, warehouse, phase)


@pytest.mark.long_running(25)
@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
@pytest.mark.parametrize("phase", ["load", "quarantine_appended", "post_load"])
def test_on_postgres_a_kill_mid_load_or_marks_leaves_no_table_half_written(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource, phase: str
) -> None:
    sandbox = _upstream(make_sandbox)
    first = materialize(job_definitions(), sandbox, warehouse)
    assert first.success, failure_message(first)
    _crash_then_repair(sandbox, warehouse, phase)
