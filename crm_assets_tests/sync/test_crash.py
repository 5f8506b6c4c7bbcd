"""`kill -9` of the sync job at a seeded point of each phase, then one normal run: exact again.

The job runs in a child process (`crash_child.py`) that kills itself mid-extract, -normalize,
-load, -deletion marks, -checks or -model; the data changes upstream before and after the
crash. One normal run must then leave exactly the API's snapshot: no duplicates, nothing missing,
`_deleted_at` right, the quarantine complete, no load package left behind. CRM_TEST_CRASH_SEED
picks other points (`make soak` goes through many).
"""

import os

import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync
from crm_assets_tests.sync.crash import SET_ASIDE, UNFIT_RECORD, differences, run_job
from crm_assets_tests.sync.crash_child import PHASES
from crm_assets_tests.warehouse_rows import warehouse_records

SEED = int(os.environ.get("CRM_TEST_CRASH_SEED", "0"))


@pytest.mark.parametrize("phase", PHASES)
def test_one_run_after_a_kill_in_any_phase_leaves_the_exact_snapshot(
    make_sandbox: SandboxFactory, sync_all: Sync, warehouse: WarehouseResource, phase: str
) -> None:
    sandbox = make_sandbox(300)
    sandbox.store.put_raw("opportunity", UNFIT_RECORD)
    assert sync_all(sandbox).success
    sandbox.store.update("contact", 7, {"first_name": "Before the crash"})
    sandbox.store.delete("lead", 11)
    sandbox.store.insert("account", {"name": "New before the crash"})

    crashed = run_job(sandbox, warehouse, phase, SEED)

    where = crashed.stdout.splitlines()[0] if crashed.stdout else crashed.stderr[-2000:]
    assert crashed.returncode == -9, f"not killed ({where}, exit {crashed.returncode})"
    sandbox.store.update("account", 2, {"name": "After the crash"})
    sandbox.store.delete("contact", 13)
    assert sync_all(sandbox).success, f"the run after {where} (seed {SEED}) failed"
    assert differences(sandbox, warehouse, [SET_ASIDE]) == [], f"after {where} (seed {SEED})"
    with warehouse.connect() as connection:
        marked = connection.execute(
            "select 'lead', id from crm.lead where _deleted_at is not null union all"
            " select 'contact', id from crm.contact where _deleted_at is not null"
        ).fetchall()
    assert sorted(marked) == [("contact", 13), ("lead", 11)]


def test_the_crash_child_runs_the_whole_job_when_not_armed(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    done = run_job(sandbox, warehouse)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(warehouse_records(warehouse, "contact")) == 120
