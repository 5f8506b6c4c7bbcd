"""A sync whose API list moves under it reads the resource again, and fails only if it still
cannot reconcile: a green run always means a table equal to the API at the end of its read."""

import threading

import dagster as dg
import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
    on_each_destination,
)
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer

SUMMARY = dg.AssetKey(["analytics", "account_summary"])


def _delete_at(sandbox: SandboxServer, resource: str, offset: int, times: int) -> list[int]:
    """Deletes the next record when `offset` of `resource` is asked for, up to `times` reads;
    every later record then shifts one to the left, so the read skips one. Returns the ids."""
    deleted: list[int] = []
    lock = threading.Lock()

    def delete(name: str, asked: int) -> None:
        with lock:
            if name == resource and asked == offset and len(deleted) < times:
                record_id = sandbox.store.records(resource)[0]["id"]
                sandbox.store.delete(resource, record_id)
                deleted.append(record_id)

    sandbox.faults.on_request = delete
    return deleted


@on_each_destination
def test_a_delete_mid_read_is_read_again_and_lands_exact(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = make_sandbox({"contact": 1000}, latency_ms=5)
    first = sync(sandbox, selection="crm/contact")
    deleted = _delete_at(sandbox, "contact", 500, times=1)

    second = sync(sandbox, selection="crm/contact")

    assert second.success
    assert len(deleted) == 1
    reconciled = check_result(second, "contact", "reconciled_with_api")
    assert reconciled.passed
    assert "read 2 times (the API total fell from 1000 to 999" in str(reconciled.description)
    metadata = materialization_metadata(second, "contact")
    assert metadata["rereads"] == 1
    assert "the API total fell" in metadata["reread_because"]
    assert metadata["newly_marked_deleted"] == 1
    live = [r for r in warehouse_records(warehouse, "contact") if r["id"] != deleted[0]]
    assert_same_records(sandbox.store.records("contact"), live)
    assert "reading crm/contact again (1 of 2): the API total fell" in capsys.readouterr().err
    assert first.success


def test_a_list_that_keeps_moving_fails_the_run_and_builds_nothing_on_it(
    make_sandbox: SandboxFactory, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 400, "contact": 300, "opportunity": 300}, latency_ms=2)
    deleted = _delete_at(sandbox, "contact", 200, times=10)

    result = sync_all(sandbox, max_rereads=1)

    assert not result.success
    assert len(deleted) == 2  # read once, then once again: both moved
    reconciled = check_result(result, "contact", "reconciled_with_api")
    assert not reconciled.passed
    assert "read 2 times" in str(reconciled.description)
    assert check_result(result, "account", "reconciled_with_api").passed
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["crm_sync"]
    assert "blocking asset check" in str(failures[0].step_failure_data.error.message)
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    assert SUMMARY not in built
