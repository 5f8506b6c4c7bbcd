"""Concurrent paging: pages fetched ahead stay exact under caps, faults, and moving data."""

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import pytest
from requests import PreparedRequest, Request, Response

from crm_assets.source import prefetch
from crm_assets.source.http import RetryPolicy, build_session, install_prefetcher
from crm_assets.source.prefetch import PagePrefetcher, with_offset
from crm_assets.source.ratelimit import RateLimiter
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync, check_result, materialize
from crm_assets_tests.support import crm_response, offsets, recorded_waits, statuses_at
from crm_assets_tests.warehouse_rows import (
    assert_same_records,
    assert_tables_match,
    warehouse_records,
)

URL = "http://127.0.0.1:9/v1/account?offset=0&limit=100&api_key=k"
LEAD = URL.replace("/v1/account", "/v1/lead")
WAIT_S = 10  # for a thread to get somewhere; the tests never sleep


def _request(url: str) -> PreparedRequest:
    return Request("GET", url).prepare()


def _offset(url: str) -> int:
    return int(url.split("offset=")[1].split("&")[0])


class _Pages:
    """Stands in for the adapter's transport: answers like the CRM, logs what was asked.

    `totals` per resource (default 250), pages of 100 but where `sizes` says otherwise (offset
    -> records). Pages from offset `hold` on answer only once `answer` is set.
    """

    def __init__(
        self, totals: dict[str, int] | None = None, sizes: dict[int, int] | None = None
    ) -> None:
        self.totals, self.sizes = totals or {}, sizes or {}
        self.sent: list[str] = []
        self.answered: list[str] = []
        self.hold: int | None = None
        self.answer = threading.Event()
        self._asked = threading.Condition()

    def __call__(self, request: PreparedRequest, **kwargs: Any) -> Response:
        url = request.url or ""
        with self._asked:
            self.sent.append(url)
            self._asked.notify_all()
        offset = _offset(url)
        if self.hold is not None and offset >= self.hold:
            assert self.answer.wait(WAIT_S), "the test never let the page answer"
        total = self.totals.get(url.split("?")[0].rsplit("/", 1)[1], 250)
        size = min(self.sizes.get(offset, 100), max(0, total - offset))
        body = {"data": [{"id": i} for i in range(offset, offset + size)], "total": total}
        with self._asked:
            self.answered.append(url)
        return crm_response(json.dumps(body).encode(), url)

    def offsets(self, path: str = "/v1/account") -> list[int]:
        with self._asked:
            return sorted(_offset(url) for url in self.sent if f"{path}?" in url)

    def wait_for(self, count: int) -> None:
        """Until `count` requests were asked for."""
        with self._asked:
            assert self._asked.wait_for(lambda: len(self.sent) >= count, WAIT_S)


def test_with_offset_changes_only_the_offset() -> None:
    assert with_offset(URL, 300) == "http://127.0.0.1:9/v1/account?offset=300&limit=100&api_key=k"


def test_a_warm_first_page_plans_the_rest_and_each_page_is_fetched_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = _Pages()
    prefetcher = PagePrefetcher(pages, max_concurrent=2)
    try:
        prefetcher.warm(_request(URL))
        prefetcher.warm(_request(URL))  # a repeat is ignored
        served = [prefetcher.send(_request(with_offset(URL, o))) for o in (0, 100, 200)]
    finally:
        prefetcher.close()
    assert [[r["id"] for r in p.json()["data"]][::49] for p in served] == [
        [0, 49, 98],
        [100, 149, 198],
        [200, 249],  # the last page may be short: the plan stands
    ]
    assert pages.offsets() == [0, 100, 200]  # each fetched once
    assert prefetcher.prefetched == 2  # planned from the warm page, before dlt asked
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_planned_pages_are_served_whatever_the_order_of_their_query_parameters() -> None:
    pages = _Pages({"account": 600})
    prefetcher = PagePrefetcher(pages, max_concurrent=2)
    try:
        prefetcher.send(_request(URL))  # dlt's first page, sent by itself: plans the rest
        for offset in range(100, 600, 100):
            # the client asks with its own parameter order: still the planned page
            asked = f"http://127.0.0.1:9/v1/account?limit=100&api_key=k&offset={offset}"
            assert prefetcher.send(_request(asked)).json()["data"][0]["id"] == offset
    finally:
        prefetcher.close()
    assert pages.offsets() == [0, 100, 200, 300, 400, 500]  # each page requested exactly once
    assert prefetcher.prefetched == 5


def test_a_page_of_another_size_drops_the_plan_and_dlt_pages_on_by_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = _Pages({"account": 1000}, sizes={100: 40})  # the server's cap moved
    prefetcher = PagePrefetcher(pages, max_concurrent=2, window=4)
    try:
        prefetcher.send(_request(URL))  # plans 100..900, fetches 100..400 ahead
        pages.wait_for(5)
        short = prefetcher.send(_request(with_offset(URL, 100)))  # served; does not match
        prefetcher.send(_request(with_offset(URL, 140)))
        again = prefetcher.send(_request(with_offset(URL, 200)))
    finally:
        prefetcher.close()
    assert len(short.json()["data"]) == 40
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "GET /v1/account at offset 100 returned 40 records, not 100; paging on one page at a time"
    ]
    # 200 was fetched ahead for the plan; once it is dropped, dlt's request is sent anew
    assert pages.offsets().count(200) == 2
    assert pages.offsets().count(140) == 1
    assert again.json()["data"][0]["id"] == 200


def test_pages_fetched_ahead_stay_within_the_window() -> None:
    pages = _Pages({"account": 10_000})
    pages.hold = 100
    prefetcher = PagePrefetcher(pages, max_concurrent=4, window=2)
    try:
        prefetcher.send(_request(URL))
        planned = prefetcher.prefetched  # submitted at once; none answered yet
    finally:
        pages.answer.set()
        prefetcher.close()
    assert planned == 2  # 2 of 4 workers idle: the window, not the workers, bounds it


def test_idle_workers_take_another_resources_pages_within_the_sync_window() -> None:
    pages = _Pages({"account": 100, "lead": 10_000})
    pages.hold = 100
    prefetcher = PagePrefetcher(pages, max_concurrent=8, window=2)
    try:
        prefetcher.send(_request(URL))  # account: one page, nothing left to fetch
        prefetcher.send(_request(LEAD))  # lead: 99 pages left, and nobody reads them
        planned = prefetcher.prefetched
        pages.wait_for(2 + planned)
    finally:
        pages.answer.set()
        prefetcher.close()
    # lead's own window is 2; idle workers fetched account's share too (2 x 2 in all), no more
    assert planned == 4
    assert pages.offsets("/v1/lead") == [0, 100, 200, 300, 400]


class _AnswerOnShutdown(ThreadPoolExecutor):
    """The pool `close` shuts down: the held pages answer once it takes no new futures, the
    order a failing sync takes, without timing."""

    pages: _Pages

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=cancel_futures)  # no new futures from here
        self.pages.answer.set()
        super().shutdown(wait=wait)


@pytest.fixture
def held(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> _Pages:
    """Pages past the first that answer once the prefetcher's pool is shut, not before."""
    caplog.set_level(logging.DEBUG)
    pages = _Pages()
    pages.hold = 100
    monkeypatch.setattr(_AnswerOnShutdown, "pages", pages, raising=False)
    monkeypatch.setattr(prefetch, "ThreadPoolExecutor", _AnswerOnShutdown)
    return pages


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


def test_close_waits_for_a_first_page_in_flight_and_fetches_nothing_more(
    caplog: pytest.LogCaptureFixture, held: _Pages, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    held.hold = 0
    prefetcher = PagePrefetcher(held, max_concurrent=2)
    prefetcher.warm(_request(URL))  # its answer would plan the rest, from the worker thread
    held.wait_for(1)

    prefetcher.close()  # a failed sync: the first page is still in flight

    assert held.answered == [URL]  # close returned once the page in flight answered
    assert held.sent == [URL]
    assert prefetcher.prefetched == 0
    assert _errors(caplog) == []
    assert thread_errors == []


def test_the_paginator_asking_after_close_sends_by_itself_and_schedules_nothing(
    caplog: pytest.LogCaptureFixture, held: _Pages, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    prefetcher = PagePrefetcher(held, max_concurrent=2)
    prefetcher.send(_request(URL))  # dlt's first page, sent by itself: plans 100, 200
    held.wait_for(3)
    prefetcher.close()  # a failed sync: planned pages still in flight

    # dlt's threads, not yet told, go on: warm, and send first and later pages, as mid-sync;
    # any of them submitting to the shut pool would raise here
    prefetcher.warm(_request(LEAD))
    prefetcher.send(_request(URL.replace("/v1/account", "/v1/contact")))  # would plan
    prefetcher.send(_request(URL))  # account read again: would plan
    answered = prefetcher.send(_request(with_offset(URL, 100)))

    assert answered.url == with_offset(URL, 100)
    assert held.offsets() == [0, 0, 100, 100, 200]  # 100 sent anew, as without a prefetcher
    assert held.offsets("/v1/lead") == []
    assert held.offsets("/v1/contact") == [0]
    assert prefetcher.prefetched == 2
    assert _errors(caplog) == []
    assert thread_errors == []


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


class _CountingLimiter(RateLimiter):
    """Counts its turns given out; never waits."""

    def __init__(self) -> None:
        super().__init__(1.0, clock=lambda: 0.0, sleep=lambda seconds: None)
        self.acquired = 0
        self._count = threading.Lock()

    def acquire(self) -> None:
        with self._count:
            self.acquired += 1
        super().acquire()


def test_pages_fetched_ahead_pass_the_rate_limit_and_dlts_hooks_and_retry_once_each(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox({"lead": 500})
    sandbox.faults.inject("lead", [503], offset=200)  # a page fetched ahead fails
    sandbox.faults.serve_bad("lead", 300, "reset_mid_body")  # ... and another is cut off
    limiter = _CountingLimiter()
    waits = recorded_waits(monkeypatch)
    session = build_session(5.0, RetryPolicy(backoff_factor=0.01), limiter, max_concurrent=3)
    prefetcher = install_prefetcher(session, max_concurrent=3, timeout_s=5.0)
    url = f"{sandbox.base_url}/v1/lead"
    seen: list[tuple[int, int]] = []  # (offset, status) of each answer dlt's hooks saw
    hooks = {"response": [lambda r, *a, **k: seen.append((_offset(r.url), r.status_code))]}
    try:
        first = Request("GET", url, params={"offset": 0, "limit": 100, "api_key": TEST_KEY})
        prefetcher.warm(session.prepare_request(first))
        ids = []
        for offset in range(0, 500, 100):
            params = {"offset": offset, "limit": 100, "api_key": TEST_KEY}
            page = session.get(url, params=params, hooks=hooks)
            ids += [r["id"] for r in page.json()["data"]]
    finally:
        prefetcher.close()

    assert ids == list(range(1, 501))
    assert prefetcher.prefetched == 4
    # a failure fetched ahead is dlt's first attempt, retried after dlt's backoff
    assert [statuses_at(sandbox, "lead", o) for o in range(0, 500, 100)] == [
        [200],
        [200],
        [503, 200],
        [200, 200],
        [200],
    ]
    assert sorted(seen) == [(0, 200), (100, 200), (200, 200), (200, 503), (300, 200), (400, 200)]
    assert waits == [0.01, 0.01]
    assert limiter.acquired == len(sandbox.faults.log) == 7  # ahead or retried, each waited


def test_concurrent_paging_with_latency_is_exact_and_bounded(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(900, latency_ms=20)

    result = sync(sandbox, max_concurrent_requests=6)

    assert result.success
    assert_tables_match(sandbox.store, warehouse)
    for name in ("account", "contact", "lead", "opportunity"):
        assert offsets(sandbox, name) == list(range(0, 900, 100))
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
    assert 340 in offsets(sandbox, "account")  # went on from what the short page returned
    assert check_result(result, "account", "reconciled_with_api").passed


def test_progress_is_logged_while_a_sync_runs(
    make_sandbox: SandboxFactory, crm_assets_def: dg.AssetsDefinition, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"opportunity": 1500}, latency_ms=20)
    settings = {"progress_every_s": 0.1, "max_concurrent_requests": 2}
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(
            [crm_assets_def], sandbox, warehouse, "crm/opportunity", instance=instance, **settings
        )
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    progress = [m for m in messages if m.startswith("sync progress")]
    assert len(progress) >= 2
    assert "opportunity: 15 pages, 1,500 of 1,500 records" in progress[-1]
    assert any("s left" in m for m in progress[:-1])
    assert all(TEST_KEY not in m for m in messages)
