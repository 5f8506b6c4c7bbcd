"""`analytics/opportunity_stage_durations` equals the stints Python computes from the history
the sandbox's changes left, on both destinations."""

from itertools import groupby

import dagster as dg

from crm_assets.defs.analytics.stage_durations import (
    STINTS_PARTITION_HISTORY,
    build_stage_durations_asset,
)
from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, materialize, on_each_destination
from crm_assets_tests.support import failure_message
from crm_sandbox import SandboxServer


def _sync(sandbox: SandboxServer, warehouse: WarehouseResource) -> dg.ExecuteInProcessResult:
    definitions = [build_crm_assets(history=["opportunity"]), build_stage_durations_asset()]
    result = materialize(definitions, sandbox, warehouse)
    assert result.success, failure_message(result)
    return result


def _expected(warehouse: WarehouseResource) -> list[tuple]:
    """The stints, computed in Python from the history's versions."""
    with warehouse.sql_client() as client:
        history = client.make_qualified_table_name("opportunity_history")
        versions = client.execute_sql(
            f"select id, stage, valid_from, valid_to from {history} order by id, valid_from"
        )
    stints = []
    for record_id, rows in groupby(versions, key=lambda v: v[0]):
        current: list = []
        for _, stage, since, until in rows:
            if current and current[-1][1] == stage and current[-1][3] == since:
                current[-1] = (record_id, stage, current[-1][2], until)
            else:
                current.append((record_id, stage, since, until))
        stints += [(int(i), n, s, a, b) for n, (i, s, a, b) in enumerate(current, start=1)]
    return stints


@on_each_destination
def test_the_stage_durations_equal_python_over_the_sandboxs_stage_changes(
    make_sandbox: SandboxFactory, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(20)
    first = next(r["stage"] for r in sandbox.store.records("opportunity") if r["id"] == 3)
    _sync(sandbox, warehouse)
    sandbox.store.update("opportunity", 3, {"stage": "negotiation"})
    sandbox.store.update("opportunity", 7, {"amount": "10.00"})  # a change, not of stage
    _sync(sandbox, warehouse)
    sandbox.store.update("opportunity", 3, {"stage": "won"})
    last = _sync(sandbox, warehouse)

    with warehouse.sql_client() as client:
        rows = client.execute_sql(
            "select opportunity_id, stint_number, stage, entered_at, left_at, hours_in_stage"
            " from analytics.opportunity_stage_durations order by opportunity_id, stint_number"
        )
    assert [tuple(r[:5]) for r in rows] == [(int(r[0]), *r[1:5]) for r in _expected(warehouse)]
    assert [(s, a is not None) for i, _, s, _, a, _ in rows if i == 3] == [
        (first, True),
        ("negotiation", True),
        ("won", False),
    ]
    assert len([r for r in rows if r[0] == 7]) == 1  # its amount changed, its stage did not
    for *_, entered, left, hours in rows:
        expected = None if left is None else (left - entered).total_seconds() / 3600
        assert hours == expected or abs(hours - expected) < 1e-6
    (check,) = [
        e for e in last.get_asset_check_evaluations() if e.check_name == STINTS_PARTITION_HISTORY
    ]
    assert check.passed
