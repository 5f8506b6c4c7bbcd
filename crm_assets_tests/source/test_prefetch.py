"""Concurrent paging: pages fetched ahead stay exact under caps, faults, and moving data."""

import threading
import time
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource
from requests import PreparedRequest, Response

from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.prefetch import PagePrefetcher, with_offset
from crm_assets.source.ratelimit import RateLimiter
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync, check_result
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records

URL = "http://127.0.0.1:9/v1/account?offset=0&limit=100&api_key=k"


def _request(url: str) -> PreparedRequest:
    request = PreparedRequest()
    request.prepare(method="GET", url=url)
    return request


class _Sender:
    """Stands in for a session's send in the unit tests: answers each URL, counts calls."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: PreparedRequest, **kwargs: Any) -> Response:
        with self.lock:
            self.sent.append(request.url or "")
        response = Response()
        response.url = request.url
        return response


def test_with_offset_changes_only_the_offset() -> None:
    assert with_offset(URL, 300) == "http://127.0.0.1:9/v1/account?offset=300&limit=100&api_key=k"


class _Pages(_Sender):
    """Answers like the CRM: 250 records, a page of 100 (the JSON parsed, as the session does)."""

    def __call__(self, request: PreparedRequest, **kwargs: Any) -> Response:
        response = super().__call__(request, **kwargs)
        offset = int((request.url or "").split("offset=")[1].split("&")[0])
        body = {"data": [{"id": i} for i in range(offset, min(offset + 100, 250))], "total": 250}
        response.json = lambda *a, **k: body  # type: ignore[method-assign]
        return response


def test_a_warm_first_page_plans_the_rest_and_dlt_hooks_still_run() -> None:
    sender = _Pages()
    prefetcher = PagePrefetcher(sender, max_concurrent=2)
    seen: list[str] = []
    try:
        prefetcher.warm(_request(URL))
        prefetcher.warm(_request(URL))  # a repeat is ignored
        pages = []
        for offset in (0, 100, 200):
            dlt_request = _request(with_offset(URL, offset))
            dlt_request.hooks["response"].append(lambda r, *a, **k: seen.append(r.url))
            pages.append(prefetcher.send(dlt_request))
    finally:
        prefetcher.close()
    assert len(pages[0].json()["data"]) == 100
    # The status check dlt's requests carry ran on every page, though the plan was made from
    # the warm page's request, which has none of dlt's hooks.
    assert sorted(seen) == sorted(with_offset(URL, o) for o in (0, 100, 200))
    offsets = sorted(int(url.split("offset=")[1].split("&")[0]) for url in sender.sent)
    assert offsets == [0, 100, 200]  # planned from the warm page, each fetched once


def test_planned_pages_are_fetched_ahead_and_served_once() -> None:
    sender = _Sender()
    prefetcher = PagePrefetcher(sender, max_concurrent=2)
    try:
        prefetcher.send(_request(URL))
        prefetcher.plan("/v1/account", [100, 200, 300, 400, 500])
        # the client asks with its own parameter order: still the planned page
        asked = "http://127.0.0.1:9/v1/account?limit=100&api_key=k&offset=100"
        assert prefetcher.send(_request(asked)).url.endswith("offset=100&limit=100&api_key=k")
        for offset in (200, 300, 400, 500):
            prefetcher.send(_request(with_offset(URL, offset)))
    finally:
        prefetcher.close()
    offsets = sorted(int(url.split("offset=")[1].split("&")[0]) for url in sender.sent)
    assert offsets == [0, 100, 200, 300, 400, 500]  # each page requested exactly once
    assert prefetcher.prefetched == 5


def test_a_cancelled_plan_sends_pages_itself() -> None:
    sender = _Sender()
    prefetcher = PagePrefetcher(sender, max_concurrent=1)
    try:
        prefetcher.send(_request(URL))
        prefetcher.plan("/v1/account", range(100, 10_000, 100))
        prefetcher.cancel("/v1/account")
        prefetcher.send(_request(with_offset(URL, 150)))
    finally:
        prefetcher.close()
    assert with_offset(URL, 150) in sender.sent
    assert prefetcher.prefetched <= 2  # the window bounds what is fetched ahead


def test_idle_workers_take_another_resources_pages_within_the_total_window() -> None:
    sender = _Sender()
    prefetcher = PagePrefetcher(sender, max_concurrent=2, window=2)
    lead = URL.replace("/v1/account", "/v1/lead")
    try:
        prefetcher.send(_request(URL))
        prefetcher.send(_request(lead))
        prefetcher.plan("/v1/account", [])  # account has nothing left to fetch
        prefetcher.plan("/v1/lead", range(100, 10_000, 100))  # and nobody reads lead's pages
        deadline = time.monotonic() + 5
        while len(sender.sent) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # anything beyond the limit would be sent by now
    finally:
        prefetcher.close()
    # lead's own window is 2; the idle workers fetched account's share too (2 x 2 in all)
    assert sum("/v1/lead?" in url for url in sender.sent) == 1 + 4


def test_the_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(5.0, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(12):
        limiter.acquire()
    assert now[0] == 2.0  # 2 at once, then 10 more at 5 a second
    assert limiter.waited_s == 2.0


def _offsets(sandbox: Any, resource: str) -> list[int]:
    return sorted(r.offset for r in sandbox.faults.requests_for(resource) if r.offset is not None)


def test_concurrent_paging_with_latency_is_exact_and_bounded(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(900, latency_ms=20)

    result = sync(sandbox, max_concurrent_requests=6)

    assert result.success
    for name in ("account", "contact", "lead", "opportunity"):
        assert_same_records(sandbox.store.records(name), warehouse_records(warehouse, name))
        assert _offsets(sandbox, name) == list(range(0, 900, 100))
        assert check_result(result, name, "reconciled_with_api").passed
    assert 1 < sandbox.faults.max_in_flight <= 6


def test_one_request_at_a_time_when_configured(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(300, latency_ms=5)

    assert sync(sandbox, max_concurrent_requests=1).success

    assert sandbox.faults.max_in_flight == 1
    assert_same_records(sandbox.store.records("lead"), warehouse_records(warehouse, "lead"))


def test_a_page_shorter_than_planned_falls_back_to_paging_one_by_one(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 1000}, latency_ms=5)
    sandbox.faults.short_page("account", 300, 40)  # the server's cap moved mid-sync

    result = sync(sandbox, selection="crm/account")

    assert result.success
    assert_same_records(sandbox.store.records("account"), warehouse_records(warehouse, "account"))
    assert 340 in _offsets(sandbox, "account")  # went on from what the short page returned
    assert check_result(result, "account", "reconciled_with_api").passed


def test_a_server_cap_below_the_limit_is_planned_from_the_first_page(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"contact": 530}, max_page_size=50, latency_ms=5)

    assert sync(sandbox, selection="crm/contact").success

    assert _offsets(sandbox, "contact") == list(range(0, 530, 50))
    assert_same_records(sandbox.store.records("contact"), warehouse_records(warehouse, "contact"))


def test_a_delete_mid_sync_fails_reconciliation_and_the_next_sync_is_exact(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"contact": 1000}, latency_ms=10)
    deleted = threading.Event()

    def delete_once(resource: str, offset: int) -> None:
        if resource == "contact" and offset == 500 and not deleted.is_set():
            deleted.set()
            sandbox.store.delete("contact", 3)  # shifts every later record one to the left

    sandbox.faults.on_request = delete_once

    first = sync(sandbox, selection="crm/contact")

    assert first.success
    reconciled = check_result(first, "contact", "reconciled_with_api")
    assert not reconciled.passed
    assert "fell" in str(reconciled.description) or "landed" in str(reconciled.description)
    assert (
        check_result(first, "contact", "gone_upstream").metadata["newly_marked_deleted"].value
        is None
    )  # nothing marked on a sync that did not reconcile

    second = sync(sandbox, selection="crm/contact")

    assert check_result(second, "contact", "reconciled_with_api").passed
    live = [r for r in warehouse_records(warehouse, "contact") if r["id"] != 3]
    assert_same_records(sandbox.store.records("contact"), live)


def test_the_rate_limit_keeps_the_request_rate_under_its_setting(
    make_sandbox: SandboxFactory, sync: Sync
) -> None:
    sandbox = make_sandbox({"lead": 3000})

    assert sync(sandbox, selection="crm/lead", rate_limit_per_s=40).success

    stamps = sorted(r.at for r in sandbox.faults.requests_for("lead"))
    assert len(stamps) == 30
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) <= 40 * 1.05


def test_progress_is_logged_while_a_sync_runs(
    make_sandbox: SandboxFactory, crm_assets_def: dg.AssetsDefinition, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"opportunity": 1500}, latency_ms=20)
    api = CrmApiResource(
        base_url=sandbox.base_url, api_key=TEST_KEY, progress_every_s=0.1, max_concurrent_requests=2
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [crm_assets_def],
            resources={"dlt": DagsterDltResource(), "crm_api": api, "warehouse": warehouse},
            selection="crm/opportunity",
            instance=instance,
        )
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    progress = [m for m in messages if m.startswith("sync progress")]
    assert len(progress) >= 2
    assert "opportunity: 15 pages, 1,500 of 1,500 records" in progress[-1]
    assert any("s left" in m for m in progress[:-1])
    assert all(TEST_KEY not in m for m in messages)
