"""Offset paging: page boundaries end to end, and malformed pages in narrow unit tests."""

import json
from typing import Any

import dagster as dg
import pytest
from requests import Request, Response

from crm_assets.source.errors import CrmResponseError
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync
from crm_assets_tests.support import crm_response, failure_message, offsets
from crm_assets_tests.warehouse_rows import (
    assert_same_records,
    assert_tables_match,
    warehouse_records,
)

BOUNDARIES = {"account": 300, "contact": 250, "lead": 0, "opportunity": 1}


def test_page_boundaries_exact_multiple_short_last_page_empty_and_single(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(BOUNDARIES)

    result = sync(sandbox)

    assert result.success
    assert offsets(sandbox, "account") == [0, 100, 200]  # no extra request past the total
    assert offsets(sandbox, "contact") == [0, 100, 200]
    assert offsets(sandbox, "lead") == [0]
    assert offsets(sandbox, "opportunity") == [0]
    assert_tables_match(sandbox.store, warehouse, ("account", "contact", "opportunity"))
    metadata = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert metadata[dg.AssetKey(["crm", "lead"])]["rows_loaded"].value == 0
    assert metadata[dg.AssetKey(["crm", "contact"])]["rows_loaded"].value == 250


@pytest.mark.parametrize(
    ("page_size", "server_cap"),
    [pytest.param(100, 40, id="server-caps-below-our-limit"), pytest.param(500, 100, id="cap-100")],
)
def test_a_server_that_caps_the_page_size_loses_no_records(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    page_size: int,
    server_cap: int,
) -> None:
    sandbox = make_sandbox({"account": 330}, max_page_size=server_cap)

    assert sync(sandbox, selection="crm/account", page_size=page_size).success

    assert_same_records(sandbox.store.records("account"), warehouse_records(warehouse, "account"))
    assert offsets(sandbox, "account") == list(range(0, 330, server_cap))
    assert {r.limit for r in sandbox.faults.requests_for("account")} == {page_size}


def _response(body: Any, offset: int = 0) -> Response:
    url = f"http://127.0.0.1:1/v1/account?offset={offset}&limit=100&api_key=k"
    return crm_response(json.dumps(body).encode(), url)


def _paginator_at(offset: int) -> CrmOffsetPaginator:
    paginator = CrmOffsetPaginator(limit=100)
    paginator.init_request(Request("GET", "http://127.0.0.1:1/v1/account"))
    paginator.current_value = offset
    return paginator


def test_paginator_advances_by_records_received_and_stops_at_total() -> None:
    paginator = _paginator_at(0)
    paginator.update_state(_response({"data": [{"id": i} for i in range(60)], "total": 150}))
    assert (paginator.current_value, paginator.has_next_page) == (60, True)
    paginator.update_state(_response({"data": [{"id": i} for i in range(90)], "total": 150}, 60))
    assert (paginator.current_value, paginator.has_next_page) == (150, False)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"total": 3}, "no 'data' list", id="no-data"),
        pytest.param({"data": {"id": 1}, "total": 1}, "no 'data' list", id="data-not-a-list"),
        pytest.param({"data": [{"email": "jane@corp.example"}]}, "'total'", id="no-total"),
        pytest.param(
            {"data": [{"email": "jane@corp.example"}], "total": "7"}, "'total'", id="text"
        ),
        pytest.param(["jane@corp.example"], "no 'data' list", id="not-an-object"),
        pytest.param(
            {"data": [{"id": 1}, "jane@corp.example"], "total": 9},
            "record 2 is a str, not an object",
            id="record-not-an-object",
        ),
        pytest.param(
            {"data": [{"id": 1, "email": "jane@corp.example"}, {"id": 1}], "total": 9},
            "1 record(s) repeat an id of the page",
            id="id-twice",
        ),
    ],
)
def test_malformed_page_raises_with_where_and_without_contents(body: Any, problem: str) -> None:
    with pytest.raises(CrmResponseError) as raised:
        _paginator_at(200).update_state(_response(body, 200))

    message = str(raised.value)
    assert problem in message
    assert "GET /v1/account at offset 200" in message
    assert "jane@corp.example" not in message
    assert "api_key" not in message


def test_an_empty_page_below_the_total_is_refused() -> None:
    with pytest.raises(CrmResponseError) as raised:
        _paginator_at(100).update_state(_response({"data": [], "total": 180}, 100))

    assert str(raised.value) == (
        "GET /v1/account at offset 100: no records, though 'total' is 180: more announced than"
        " paging reaches"
    )


def test_an_empty_page_at_the_total_ends_paging() -> None:
    paginator = _paginator_at(180)  # records deleted meanwhile: the total moved down to here
    paginator.update_state(_response({"data": [], "total": 180}, 180))

    assert paginator.has_next_page is False


def test_a_total_no_sync_could_page_through_is_refused() -> None:
    paginator = CrmOffsetPaginator(limit=100, max_records=1_000_000)

    with pytest.raises(CrmResponseError) as raised:
        paginator.update_state(_response({"data": [{"id": 1}], "total": 10**12}))

    assert str(raised.value) == (
        "GET /v1/account at offset 0: 'total' 1,000,000,000,000 is more than the 1,000,000"
        " records a sync reads (max_records_per_resource)"
    )


def test_a_page_that_repeats_the_one_before_is_refused() -> None:
    paginator = CrmOffsetPaginator(limit=2)
    page = {"data": [{"id": 1}, {"id": 2}], "total": 6}
    paginator.update_state(_response(page))

    with pytest.raises(CrmResponseError) as raised:
        paginator.update_state(_response(page, offset=2))

    assert "at offset 2: the page repeats the one before it (same ids)" in str(raised.value)
    # id-less records are the record gate's business, not a repeat
    idless = CrmOffsetPaginator(limit=2)
    for offset in (0, 2):
        idless.update_state(_response({"data": [{"x": 1}, {"x": 1}], "total": 6}, offset))


def _column(warehouse: WarehouseResource, table: str, column: str) -> Any:
    """`column` of record 7 in the warehouse (it fails the test when the row is missing)."""
    with warehouse.connect() as connection:
        (value,) = connection.execute(f"select {column} from crm.{table} where id = 7").fetchall()
    return value[0]


def test_a_sync_against_a_total_beyond_the_limit_fails_and_loads_nothing(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox, "crm/lead").success
    good = _column(warehouse, "lead", "status")
    sandbox.store.update("lead", 7, {"status": "changed"})

    failed = sync(sandbox, "crm/lead", max_records_per_resource=100)

    message = failure_message(failed)
    assert "GET /v1/lead at offset 0: 'total' 120 is more than the 100 records" in message
    assert "Nothing was loaded" in message
    assert good != "changed"
    assert _column(warehouse, "lead", "status") == good


def test_a_server_that_serves_a_page_twice_fails_the_sync_and_loads_nothing(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(350)
    assert sync(sandbox, "crm/contact").success
    good = _column(warehouse, "contact", "title")
    sandbox.store.update("contact", 7, {"title": "changed"})
    sandbox.faults.skip_page("contact", 100)  # 200-299 at offset 100, and again at 200

    failed = sync(sandbox, "crm/contact")

    message = failure_message(failed)
    assert "GET /v1/contact at offset 200: the page repeats the one before it" in message
    assert good != "changed"
    assert _column(warehouse, "contact", "title") == good
