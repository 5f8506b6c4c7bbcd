"""Asset checks: all pass on a clean sync, and each fails when it should."""

from typing import Any

import dagster as dg

from crm_assets.source.batches import QUARANTINE_TABLE
from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
    on_each_destination,
)
from crm_sandbox import SandboxServer

SYNC_CHECKS = ("reconciled_with_api", "gone_upstream", "no_schema_drift")
TABLE_CHECKS = ("id_unique_not_null", "declared_columns")


def _only_checks(*names: str, asset: str) -> dg.AssetSelection:
    key = dg.AssetKey(["crm", asset])
    return dg.AssetSelection.checks(*(dg.AssetCheckKey(key, name) for name in names))


def _evaluated(result: dg.ExecuteInProcessResult, asset: str, name: str) -> bool:
    return any(
        e.asset_key == dg.AssetKey(["crm", asset]) and e.check_name == name
        for e in result.get_asset_check_evaluations()
    )


def _sql(warehouse: WarehouseResource, statement: str) -> Any:
    """Runs `statement` with {table} names qualified; the first value of its result, if any."""
    with warehouse.sql_client() as client:
        names = {name: client.make_qualified_table_name(name) for name in crm_resource_names()}
        rows = client.execute_sql(statement.format(**names))
    return rows[0][0] if rows else None


@on_each_destination
def test_every_check_passes_on_a_clean_sync(
    sandbox: SandboxServer, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    result = sync_all(sandbox)

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    # five per CRM table, and the model's one row per live account
    assert len(evaluations) == 5 * len(crm_resource_names()) + 1
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]


@on_each_destination
def test_a_page_skipped_on_every_read_fails_the_run_and_marks_nothing_deleted(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(350)
    assert sync(sandbox).success
    # Offset 200 answers records 300-349, as if 200-249 had never been there: a short page, so
    # paging goes on at 250 and 200-249 never arrive, silently; on the read and both re-reads.
    for _ in range(3):
        sandbox.faults.skip_page("contact", 200)

    result = sync(sandbox)

    assert not result.success  # the blocking check fails the run
    reconciled = check_result(result, "contact", "reconciled_with_api")
    assert not reconciled.passed
    assert reconciled.severity == dg.AssetCheckSeverity.ERROR
    assert reconciled.description == (
        "300 distinct ids landed but the API total is 350; received 350 records; 50 ids arrived"
        " twice: records shifted between pages; read 3 times (50 ids arrived twice; then 50 ids"
        " arrived twice)"
    )
    assert check_result(result, "account", "reconciled_with_api").passed
    assert not _evaluated(result, "contact", "gone_upstream")  # skipped: absent ids prove nothing
    assert (
        _sql(warehouse, "select count(_deleted_at) from {contact}") == 0
    )  # the 50 unseen contacts still exist upstream


@on_each_destination
def test_a_duplicated_id_in_the_table_fails_the_uniqueness_check(
    sandbox: SandboxServer, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    assert sync_all(sandbox).success
    _sql(warehouse, "update {lead} set id = 9 where id = 10")  # two rows with id 9

    result = sync_all(sandbox, _only_checks(*TABLE_CHECKS, asset="lead"))

    unique = check_result(result, "lead", "id_unique_not_null")
    assert not unique.passed
    assert unique.severity == dg.AssetCheckSeverity.ERROR
    assert unique.metadata["duplicate_ids"].value == 1
    assert check_result(result, "lead", "declared_columns").passed
    assert not result.get_asset_materialization_events()  # checks alone: nothing re-synced


@on_each_destination
def test_a_column_of_the_wrong_type_fails_the_declared_columns_check(
    sandbox: SandboxServer, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    assert sync_all(sandbox).success
    _sql(warehouse, "alter table {lead} alter column score type varchar")
    _sql(warehouse, "alter table {lead} drop column email")

    result = sync_all(sandbox, _only_checks("declared_columns", asset="lead"))

    columns = check_result(result, "lead", "declared_columns")
    assert not columns.passed
    assert columns.description == "email: missing; score: text, declared bigint"


@on_each_destination
def test_table_checks_fail_when_the_table_does_not_exist(
    sandbox: SandboxServer, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    result = sync_all(sandbox, _only_checks(*TABLE_CHECKS, asset="account"))

    for name in TABLE_CHECKS:
        evaluation = check_result(result, "account", name)
        assert not evaluation.passed
        assert evaluation.description == "table 'account' does not exist in the warehouse"


@on_each_destination
def test_records_quarantined_is_every_record_the_sync_withheld_whole(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    sandbox.store.put_raw("opportunity", {"name": "no id", "amount": 10})
    sandbox.store.put_raw("opportunity", {"id": "", "name": "empty id"})
    sandbox.store.update("opportunity", 5, {"amount": "n/a"})  # strict: withheld, id and all

    result = sync(sandbox, "crm/opportunity", schema_enforcement="strict")

    assert not result.success  # the table is short of the API: the blocking check fails
    with warehouse.sql_client() as client:
        quarantine = client.make_qualified_table_name(QUARANTINE_TABLE)
        ((whole, idless),) = client.execute_sql(
            f"select count(*), count(*) - count(record_id) from {quarantine}"
            " where resource = %s and field is null",
            "opportunity",
        )
    assert (whole, idless) == (3, 2)
    metadata = materialization_metadata(result, "opportunity")
    assert (metadata["records_quarantined"], metadata["records_without_id"]) == (whole, idless)
    for check in ("reconciled_with_api", "no_schema_drift"):
        assert (
            check_result(result, "opportunity", check).metadata["records_withheld"].value == whole
        )
