"""Incremental sync (opt-in): only changed records are asked for, the table stays exact, the
cursor comes from the warehouse (so a full sync moves it too), and only a full sync marks
deletions."""

import shutil
from pathlib import Path

import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
)
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer

INCREMENTAL = {"incremental_param": "updated_since"}


def _listings(sandbox: SandboxServer, resource: str, since: int = 0) -> list[object]:
    """The `updated_since` of each listing request (probes, with limit 1, left out)."""
    requests = sandbox.faults.requests_for(resource)[since:]
    return [r.updated_since for r in requests if r.limit != 1]


def test_an_incremental_sync_asks_only_for_changes_and_keeps_the_table_exact(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(400)
    first = sync(sandbox, selection="crm/contact", **INCREMENTAL)
    assert first.success
    assert set(_listings(sandbox, "contact")) == {None}  # nothing loaded yet: read everything
    cursor = max(r["updated_at"] for r in sandbox.store.records("contact"))
    seen = len(sandbox.faults.requests_for("contact"))
    for record_id in (5, 77, 300):
        sandbox.store.update("contact", record_id, {"title": "Chief Incremental Officer"})
    sandbox.store.insert("contact", {"first_name": "New"})

    second = sync(sandbox, selection="crm/contact", **INCREMENTAL)

    assert second.success
    assert _listings(sandbox, "contact", seen) == [cursor]  # one page, from the cursor on
    assert_same_records(sandbox.store.records("contact"), warehouse_records(warehouse, "contact"))
    metadata = materialization_metadata(second, "contact")
    # the 4 changes, and the record at the cursor again: the filter is inclusive
    assert (metadata["sync_mode"], metadata["records_received"]) == ("incremental", 5)
    assert (metadata["api_total"], metadata["live_rows"]) == (401, 401)
    reconciled = check_result(second, "contact", "reconciled_with_api")
    assert reconciled.passed
    assert "5 changed records landed of 5" in str(reconciled.description)


def test_the_cursor_comes_from_the_warehouse_when_the_local_state_is_gone(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource, tmp_path: Path
) -> None:
    sandbox = make_sandbox(200)
    assert sync(sandbox, selection="crm/lead", **INCREMENTAL).success
    cursor = max(r["updated_at"] for r in sandbox.store.records("lead"))
    shutil.rmtree(tmp_path / "dlt_pipelines")
    seen = len(sandbox.faults.requests_for("lead"))
    sandbox.store.update("lead", 9, {"status": "qualified"})

    result = sync(sandbox, selection="crm/lead", **INCREMENTAL)

    assert result.success
    assert _listings(sandbox, "lead", seen) == [cursor]
    assert materialization_metadata(result, "lead")["records_received"] == 2  # + the cursor's
    assert_same_records(sandbox.store.records("lead"), warehouse_records(warehouse, "lead"))


@pytest.mark.parametrize("dialect", ["default", "foreign"])  # integer ids, string ids
def test_only_a_full_sync_marks_deletions(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    dialect: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = make_sandbox(150, dialect=dialect)
    assert sync(sandbox, selection="crm/account", **INCREMENTAL).success
    sandbox.store.delete("account", 12)

    incremental = sync(sandbox, selection="crm/account", **INCREMENTAL)

    assert incremental.success
    assert (
        not [  # skipped (Dagster shows it so), not a WARN on every incremental sync
            e for e in incremental.get_asset_check_evaluations() if e.check_name == "gone_upstream"
        ]
    )
    assert (
        "gone_upstream on crm/account not evaluated: an incremental sync" in capsys.readouterr().err
    )
    reconciled = check_result(incremental, "account", "reconciled_with_api")
    assert reconciled.passed
    assert "1 rows deleted upstream await the next full sync" in str(reconciled.description)
    assert materialization_metadata(incremental, "account")["live_rows"] == 150

    full = sync(sandbox, selection="crm/account", mode="full", **INCREMENTAL)

    assert materialization_metadata(full, "account")["sync_mode"] == "full"
    assert (
        check_result(full, "account", "gone_upstream").metadata["newly_marked_deleted"].value == 1
    )
    assert materialization_metadata(full, "account")["live_rows"] == 149


def test_a_record_the_filter_never_lists_fails_reconciliation(
    make_sandbox: SandboxFactory, sync: Sync
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox, selection="crm/opportunity", **INCREMENTAL).success
    backdated = {**sandbox.store.records("opportunity")[0], "id": 5000}
    sandbox.store.put_raw("opportunity", {**backdated, "updated_at": "2020-01-01T00:00:00Z"})

    result = sync(sandbox, selection="crm/opportunity", **INCREMENTAL)

    reconciled = check_result(result, "opportunity", "reconciled_with_api")
    assert not reconciled.passed
    assert "120 live rows but the API 121 records" in str(reconciled.description)
    assert "run a full sync" in str(reconciled.description)


def test_without_incremental_configuration_every_sync_is_full(
    make_sandbox: SandboxFactory, sync: Sync
) -> None:
    sandbox = make_sandbox(50)

    result = sync(sandbox, selection="crm/lead", mode="incremental")

    assert result.success
    assert materialization_metadata(result, "lead")["sync_mode"] == "full"
    assert set(_listings(sandbox, "lead")) == {None}


def test_a_full_sync_moves_the_cursor_too(make_sandbox: SandboxFactory, sync: Sync) -> None:
    sandbox = make_sandbox(100)
    assert sync(sandbox, selection="crm/lead", mode="full", **INCREMENTAL).success
    cursor = max(r["updated_at"] for r in sandbox.store.records("lead"))
    seen = len(sandbox.faults.requests_for("lead"))

    assert sync(sandbox, selection="crm/lead", **INCREMENTAL).success

    assert _listings(sandbox, "lead", seen) == [cursor]
