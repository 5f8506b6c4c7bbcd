"""History mode: `crm/<name>_history` keeps one row per version of each record, loaded with the
current-state table; a change opens a version, no change writes nothing, a deletion closes the
current one and a return opens a new one, on full and incremental syncs alike."""

import dagster as dg
import pytest

from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.defs.crm.checks import HISTORY_CONSISTENT, build_table_checks
from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    check_result,
    materialization_metadata,
    materialize,
    on_each_destination,
)
from crm_assets_tests.support import failure_message
from crm_sandbox import SandboxServer

RECORDS = 30


def _versions(warehouse: WarehouseResource, table: str = "opportunity") -> list[tuple]:
    """(id, stage, current) per version, in id and then time order."""
    with warehouse.sql_client() as client:
        history = client.make_qualified_table_name(f"{table}_history")
        rows = client.execute_sql(
            f"select id, stage, valid_to is null from {history} order by id, valid_from"
        )
    return [(int(i), stage, bool(current)) for i, stage, current in rows]


def _sync(
    sandbox: SandboxServer, warehouse: WarehouseResource, mode: str = "full", checks: bool = False
) -> dg.ExecuteInProcessResult:
    definitions: list = [build_crm_assets(history=["opportunity"])]
    if checks:  # the table checks too, the history's among them
        definitions.append(build_table_checks(crm_resource_names(), ["opportunity"]))
    result = materialize(
        definitions, sandbox, warehouse, mode=mode, incremental_param="updated_since"
    )
    assert result.success, failure_message(result)
    return result


def _stage(sandbox: SandboxServer, record_id: int) -> str:
    return next(r["stage"] for r in sandbox.store.records("opportunity") if r["id"] == record_id)


@on_each_destination
def test_a_change_opens_a_version_and_no_change_writes_none(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(RECORDS)
    first = _sync(sandbox, warehouse)
    before = _stage(sandbox, 3)
    sandbox.store.update("opportunity", 3, {"stage": "negotiation"})
    _sync(sandbox, warehouse)
    unchanged = _sync(sandbox, warehouse)  # nothing changed upstream

    versions = _versions(warehouse)
    assert len(versions) == RECORDS + 1
    assert [v for v in versions if v[0] == 3] == [(3, before, False), (3, "negotiation", True)]
    assert sum(current for *_, current in versions) == RECORDS
    metadata = materialization_metadata(first, "opportunity_history")
    assert (metadata["dagster/row_count"], metadata["current_versions"]) == (RECORDS, RECORDS)
    metadata = materialization_metadata(unchanged, "opportunity_history")
    assert (metadata["dagster/row_count"], metadata["current_versions"]) == (RECORDS + 1, RECORDS)


@on_each_destination
def test_a_deletion_closes_the_current_version_and_a_return_opens_a_new_one(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(RECORDS)
    _sync(sandbox, warehouse)
    record = next(r for r in sandbox.store.records("opportunity") if r["id"] == 5)
    sandbox.store.delete("opportunity", 5)
    deleted = _sync(sandbox, warehouse)
    closed = [v for v in _versions(warehouse) if v[0] == 5]
    sandbox.store.put_raw("opportunity", record)  # back, as it was
    returned = _sync(sandbox, warehouse, checks=True)

    assert closed == [(5, record["stage"], False)]
    assert check_result(returned, "opportunity_history", HISTORY_CONSISTENT).passed
    assert materialization_metadata(deleted, "opportunity_history")["closed_as_deleted"] == 1
    reopened = [v for v in _versions(warehouse) if v[0] == 5]
    assert reopened == [(5, record["stage"], False), (5, record["stage"], True)]


@on_each_destination
def test_an_incremental_sync_keeps_the_versions_a_full_one_would(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(RECORDS)
    _sync(sandbox, warehouse)
    before = {r["id"]: r["stage"] for r in sandbox.store.records("opportunity")}
    sandbox.store.update("opportunity", 2, {"stage": "won"})
    sandbox.store.update("opportunity", 9, {"stage": "lost"})

    incremental = _sync(sandbox, warehouse, mode="incremental")

    assert materialization_metadata(incremental, "opportunity")["sync_mode"] == "incremental"
    now = {r["id"]: r["stage"] for r in sandbox.store.records("opportunity")}
    versions = []  # a record whose stage moved: its old version closed, its new one current
    for i in sorted(before):
        if now[i] != before[i]:
            versions.append((i, before[i], False))
        versions.append((i, now[i], True))
    assert len(versions) == RECORDS + 2
    assert _versions(warehouse) == versions


@on_each_destination
def test_the_consistency_check_counts_a_second_current_version(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(RECORDS)
    _sync(sandbox, warehouse)
    with warehouse.sql_client() as client:
        history = client.make_qualified_table_name("opportunity_history")
        columns = "id, stage, valid_from, _dlt_id, _dlt_load_id"
        client.execute_sql(
            f"insert into {history} ({columns}) select {columns} from {history} where id = 4"
        )

    result = _sync(sandbox, warehouse, checks=True)

    evaluation = check_result(result, "opportunity_history", HISTORY_CONSISTENT)
    assert not evaluation.passed
    assert evaluation.description == (
        "1 ids with more than one current version; 1 versions overlapping the one before;"
        " 1 live rows of crm/opportunity without exactly one current version"
    )


def test_the_history_asset_cannot_be_synced_without_its_table(
    sandbox: SandboxServer, warehouse: WarehouseResource
) -> None:
    result = materialize(
        [build_crm_assets(history=["opportunity"])],
        sandbox,
        warehouse,
        selection=[dg.AssetKey(["crm", "opportunity_history"])],
    )

    assert not result.success
    assert "select both" in failure_message(result)


def test_a_run_of_the_table_without_its_history_says_the_versions_are_not_kept(
    sandbox: SandboxServer, warehouse: WarehouseResource, capsys: pytest.CaptureFixture[str]
) -> None:
    result = materialize(
        [build_crm_assets(history=["opportunity"])],
        sandbox,
        warehouse,
        selection=[dg.AssetKey(["crm", "opportunity"])],
    )

    assert result.success, failure_message(result)
    logged = capsys.readouterr().err
    assert "does not select crm/opportunity_history: the versions this read sees" in logged
