"""Concurrent paging: pages fetched ahead stay exact under caps, faults, and moving data."""

import logging
import threading
import time
from typing import Any

import dagster as dg
import pytest
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


class _HeldPages(_Pages):
    """Like `_Pages`, but every answer waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()  # a request is in flight
        self.answer = threading.Event()  # ... and may answer now

    def __call__(self, request: PreparedRequest, **kwargs: Any) -> Response:
        self.asked.set()
        assert self.answer.wait(10), "the test never let the page answer"
        return super().__call__(request, **kwargs)


def _answer_once_the_pool_is_shut(
    prefetcher: PagePrefetcher, sender: _HeldPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`close` shuts the pool down, then the pages in flight answer, then it waits for them:
    the order a failing sync takes, without timing."""
    pool = prefetcher._pool
    shutdown = pool.shutdown

    def shutdown_then_answer(wait: bool = True, *, cancel_futures: bool = False) -> None:
        shutdown(wait=False, cancel_futures=cancel_futures)  # no new futures from here on
        sender.answer.set()
        shutdown(wait=wait)

    monkeypatch.setattr(pool, "shutdown", shutdown_then_answer)


@pytest.fixture
def held(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[_HeldPages, PagePrefetcher]:
    """A prefetcher whose pages answer only when let go, and once its pool is shut."""
    caplog.set_level(logging.DEBUG)
    sender = _HeldPages()
    prefetcher = PagePrefetcher(sender, max_concurrent=2)
    _answer_once_the_pool_is_shut(prefetcher, sender, monkeypatch)
    return sender, prefetcher


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """What any thread let escape while the test ran."""
    caught: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", caught.append)
    return caught


def test_a_first_page_answering_after_close_plans_nothing_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
    held: tuple[_HeldPages, PagePrefetcher],
    thread_errors: list[threading.ExceptHookArgs],
) -> None:
    sender, prefetcher = held
    prefetcher.warm(_request(URL))  # its answer would plan the rest, from the worker thread
    assert sender.asked.wait(10)

    prefetcher.close()  # a failed sync: the first page is still in flight; returns once answered

    # concurrent.futures logs a done-callback's exception ("exception calling callback for")
    assert _errors(caplog) == []
    assert thread_errors == []
    assert sender.sent == [URL]
    assert prefetcher.prefetched == 0


def test_the_paginator_asking_after_close_sends_by_itself_and_schedules_nothing(
    caplog: pytest.LogCaptureFixture,
    held: tuple[_HeldPages, PagePrefetcher],
    thread_errors: list[threading.ExceptHookArgs],
) -> None:
    sender, prefetcher = held
    sender.answer.set()
    prefetcher.send(_request(URL))  # dlt's first page, sent by itself
    sender.answer.clear()
    sender.asked.clear()
    prefetcher.plan("/v1/account", [100, 200, 300, 400, 500])
    assert sender.asked.wait(10)
    prefetcher.close()  # a failed sync: planned pages still in flight

    # dlt's threads, not yet told, go on: plan, warm and send as they would mid-sync
    lead = URL.replace("/v1/account", "/v1/lead")
    prefetcher.plan("/v1/account", [600, 700])
    prefetcher.warm(_request(lead))
    answered = prefetcher.send(_request(with_offset(URL, 300)))

    assert answered.url == with_offset(URL, 300)  # sent by itself, as without a prefetcher
    assert _errors(caplog) == []
    assert thread_errors == []
    assert lead not in sender.sent
    assert not any(url.endswith(("offset=600", "offset=700")) for url in sender.sent)


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
