"""The CRM session: which statuses are retried, how often, how long between attempts; the rate
limit, connection slots, size cap and redirect refusal on every attempt; JSON parsed once, exactly.

Most tests drive the session itself against the sandbox server; a few run a whole sync to see
what a failure says and that the warehouse keeps the last good sync.
"""

import copy
import io
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
import urllib3
from requests import PreparedRequest, Request, Response, Session

from crm_assets.source.errors import CrmResponseError, where
from crm_assets.source.http import RETRY_STATUSES, CrmAdapter, RetryPolicy, build_session
from crm_assets.source.ratelimit import RateLimiter
from crm_assets.source.response import CrmResponse, read_capped
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync, free_port
from crm_assets_tests.support import (
    FAST,
    assert_key_nowhere,
    crm_response,
    failure_message,
    recorded_waits,
    statuses_at,
)
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer


def _get(session: Session, sandbox: SandboxServer, offset: int = 0) -> Response:
    params = {"offset": offset, "limit": 100, "api_key": TEST_KEY}
    return session.get(f"{sandbox.base_url}/v1/lead", params=params)


def _session(**policy: Any) -> Session:
    return build_session(5.0, RetryPolicy(**{"backoff_factor": 0.05, **policy}))


def test_default_policy_is_the_seeds() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.max_attempts, policy.backoff_factor) == (3, 4, 2.0)
    assert policy.statuses == RETRY_STATUSES == (429, 500, 502, 503, 504)


@pytest.mark.parametrize("status", RETRY_STATUSES)
def test_a_transient_status_is_retried_with_exponential_backoff(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    sandbox = make_sandbox({"lead": 150})
    sandbox.faults.inject("lead", [status] * 3)
    waits = recorded_waits(monkeypatch)

    response = _get(_session(), sandbox)

    assert isinstance(response, CrmResponse)
    assert response.status_code == 200
    assert [r.status for r in sandbox.faults.log] == [status, status, status, 200]
    assert waits == [0.05, 0.1, 0.2]


def test_the_seed_policy_waits_2_4_8_seconds_then_gives_up(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox({"lead": 10})
    sandbox.faults.inject("lead", [503] * 5)
    waits = recorded_waits(monkeypatch)

    response = build_session(5.0, RetryPolicy()).get(
        f"{sandbox.base_url}/v1/lead", params={"api_key": TEST_KEY}
    )

    assert response.status_code == 503  # the last answer, for dlt's hook to report
    assert [r.status for r in sandbox.faults.log] == [503] * 4
    assert waits == [2, 4, 8]


@pytest.mark.parametrize(
    ("retry_after_s", "policy", "wait"),
    [
        pytest.param(3, {"backoff_factor": 0.01}, 3, id="honoured-over-the-backoff"),
        pytest.param(120, {"max_delay_s": 0.2}, 0.2, id="capped"),
    ],
)
def test_retry_after_sets_the_wait_within_the_cap(
    make_sandbox: SandboxFactory,
    monkeypatch: pytest.MonkeyPatch,
    retry_after_s: int,
    policy: dict[str, float],
    wait: float,
) -> None:
    sandbox = make_sandbox({"lead": 50})
    sandbox.faults.inject("lead", [429], retry_after_s=retry_after_s)
    waits = recorded_waits(monkeypatch)

    assert _get(_session(**policy), sandbox).status_code == 200

    assert waits == [wait]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 501])
def test_a_permanent_status_is_answered_at_once(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    sandbox = make_sandbox({"lead": 1})
    sandbox.faults.inject("lead", [status, 500])
    waits = recorded_waits(monkeypatch)

    assert _get(_session(), sandbox).status_code == status

    assert [r.status for r in sandbox.faults.log] == [status]
    assert waits == []


def test_connection_errors_are_retried_then_raised_naming_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/lead"
    waits = recorded_waits(monkeypatch)

    with pytest.raises(requests.ConnectionError) as raised:
        _session().get(url, params={"offset": 200, "api_key": TEST_KEY})

    assert waits == [0.05, 0.1, 0.2]  # 4 attempts
    assert where(raised.value.request.url) == ("/v1/lead", "200")


def test_read_timeouts_are_retried(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"lead": 5}, latency_ms=400)
    session = build_session(0.1, RetryPolicy(max_retries=1, backoff_factor=0.01))

    with pytest.raises(requests.ReadTimeout):
        _get(session, sandbox)

    assert len(sandbox.faults.log) == 2


def test_a_body_cut_off_midway_is_retried_like_a_reset(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox({"lead": 250})
    sandbox.faults.serve_bad("lead", 100, "reset_mid_body")
    sandbox.faults.serve_bad("lead", 200, "reset_mid_body", times=4)
    recorded_waits(monkeypatch)
    session = _session()

    page = _get(session, sandbox, offset=100)
    with pytest.raises(requests.exceptions.ChunkedEncodingError) as raised:
        _get(session, sandbox, offset=200)

    assert [r["id"] for r in page.json()["data"]] == list(range(101, 201))
    assert statuses_at(sandbox, "lead", 100) == [200, 200]  # cut off, then whole
    assert len(statuses_at(sandbox, "lead", 200)) == 4
    assert where(raised.value.request.url) == ("/v1/lead", "200")  # says where


def test_every_attempt_waits_for_the_rate_limit(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox({"lead": 50})
    sandbox.faults.inject("lead", [503, 503])
    now = [0.0]
    limiter = RateLimiter(
        10.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    recorded_waits(monkeypatch)
    session = build_session(5.0, RetryPolicy(backoff_factor=0.01), rate_limiter=limiter)

    assert _get(session, sandbox).status_code == 200

    assert len(sandbox.faults.log) == 3
    assert limiter.waited_s == pytest.approx(0.2)  # the 2nd and 3rd attempt waited 0.1 s each


def test_no_more_than_max_concurrent_requests_are_in_flight(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"lead": 800}, latency_ms=100)
    session = build_session(5.0, RetryPolicy(), max_concurrent=2)

    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda offset: _get(session, sandbox, offset), range(0, 800, 100)))

    assert [p.status_code for p in pages] == [200] * 8
    assert sandbox.faults.max_in_flight == 2


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_fails_naming_only_the_host(
    make_sandbox: SandboxFactory, status: int
) -> None:
    # The sandbox redirects to another host with the query string, key included, along.
    sandbox = make_sandbox({"lead": 150})
    sandbox.faults.inject("lead", [status], offset=100)

    with pytest.raises(CrmResponseError) as raised:
        _get(_session(), sandbox, offset=100)

    assert str(raised.value) == (
        f"GET /v1/lead at offset 100: answered HTTP {status}, a redirect to elsewhere.invalid;"
        " not followed (the API key is in the query string): point the base URL at the new"
        " location"
    )
    assert statuses_at(sandbox, "lead", 100) == [status]  # asked once, not retried


def test_a_body_over_the_cap_is_refused_and_the_session_goes_on(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox({"lead": 250})
    sandbox.faults.serve_bad("lead", 100, "oversized_body")  # 3 MB
    session = build_session(5.0, RetryPolicy(), max_response_bytes=2**20)

    with pytest.raises(CrmResponseError) as raised:
        _get(session, sandbox, offset=100)

    assert (
        str(raised.value) == "GET /v1/lead at offset 100: response body larger than 1,048,576 bytes"
    )
    assert statuses_at(sandbox, "lead", 100) == [200]  # not retried
    assert _get(session, sandbox, offset=100).json()["total"] == 250


class _Endless(io.RawIOBase):
    """A body that never ends, counting the bytes handed out."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        view[:] = b"x" * len(view)
        self.served += len(view)
        return len(view)


def _streamed(fp: Any, headers: dict[str, str] | None = None) -> Response:
    """A response as `HTTPAdapter.build_response` makes it: the urllib3 body not yet read."""
    response = Response()
    response.status_code = 200
    response.headers.update(headers or {})
    response.raw = urllib3.HTTPResponse(fp, headers=headers, preload_content=False)
    response.request = Request("GET", "http://127.0.0.1:1/v1/lead?offset=300&api_key=k").prepare()
    return response


def test_the_cap_stops_reading_at_the_cap() -> None:
    endless = _Endless()

    with pytest.raises(CrmResponseError) as raised:
        read_capped(_streamed(endless), 1000)

    assert str(raised.value) == "GET /v1/lead at offset 300: response body larger than 1,000 bytes"
    assert endless.served <= 1000 + 2**16  # at most one chunk past the cap was read
    assert read_capped(_streamed(io.BytesIO(b"x" * 1000)), 1000) == b"x" * 1000
    declared = _Endless()
    with pytest.raises(CrmResponseError):
        read_capped(_streamed(declared, {"content-length": str(10**12)}), 1000)
    assert declared.served == 0  # refused before reading anything


def test_json_is_parsed_once_with_numbers_a_double_cannot_hold_exact() -> None:
    page = crm_response(
        b'{"data": [{"id": 18446744073709551615, "wide": 18446744073709551616,'
        b' "idr": 4512345678901234.56, "rate": 0.25, "fx": 1234.567891}], "total": 1}'
    )

    (record,) = page.json()["data"]

    assert page.json() is page.json()  # parsed once: dlt's client and the paginator share it
    assert record == {
        "id": 18446744073709551615,
        "wide": 18446744073709551616,  # past 64 bits: orjson alone makes it a float
        "idr": Decimal("4512345678901234.56"),  # 18 digits: a double keeps 17
        "rate": 0.25,
        "fx": 1234.567891,  # a double holds it: stays a float, as every other page has it
    }
    assert type(record["wide"]) is int
    assert type(record["rate"]) is float
    assert type(record["fx"]) is float


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        pytest.param(b"<html></html>", "text/html", "answered 'text/html', not JSON", id="html"),
        pytest.param(b"  ", "application/json", "answered an empty body, not JSON", id="empty"),
        pytest.param(
            b'{"data": [{"id": 1', "application/json", "the body is not valid JSON (cut short?)"
        ),
        pytest.param(
            b"[" * 2000 + b"]" * 2000, "application/json", "JSON nested deeper than 1024 levels"
        ),
    ],
)
def test_a_body_that_is_not_json_is_refused_saying_where(
    body: bytes, content_type: str, problem: str
) -> None:
    page = crm_response(body, content_type=content_type)

    with pytest.raises(CrmResponseError) as raised:
        page.json()

    assert str(raised.value) == f"GET /v1/lead at offset 300: {problem}"


def test_deep_copying_the_session_as_dlt_does_leaves_the_original_intact(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox({"lead": 10})
    limiter = RateLimiter(1000.0)
    session = build_session(5.0, RetryPolicy(), rate_limiter=limiter, max_concurrent=2)
    adapter = session.get_adapter(sandbox.base_url)

    copied = copy.deepcopy({"client": {"session": session}})  # dlt's `_validate_config`

    assert copied["client"]["session"] is not session
    assert session.get_adapter(sandbox.base_url) is adapter
    assert isinstance(adapter, CrmAdapter)
    assert adapter.rate_limiter is limiter
    assert _get(session, sandbox).json()["total"] == 10


def test_session_hooks_run_once_on_each_attempt_answered(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"lead": 50})
    sandbox.faults.inject("lead", [503])
    seen: list[int] = []
    session = _session(backoff_factor=0.01)
    request = Request(
        "GET",
        f"{sandbox.base_url}/v1/lead",
        params={"api_key": TEST_KEY},
        hooks={"response": [lambda r, *a, **k: seen.append(r.status_code)]},
    )
    prepared: PreparedRequest = session.prepare_request(request)

    assert session.send(prepared).status_code == 200

    assert seen == [503, 200]


# --- whole syncs: what a failure says, and what the warehouse keeps -------------------------


def test_a_sync_through_transient_statuses_completes_exactly(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 250})
    sandbox.faults.inject("account", [503, 503, 503], offset=100)

    result = sync(sandbox, selection="crm/account", **FAST)

    assert result.success
    # fetched ahead, the first 503 is dlt's first attempt: 4 attempts in all, as without
    assert statuses_at(sandbox, "account", 100) == [503, 503, 503, 200]
    assert statuses_at(sandbox, "account", 0) == statuses_at(sandbox, "account", 200) == [200]
    assert_same_records(sandbox.store.records("account"), warehouse_records(warehouse, "account"))


def test_retries_give_up_after_three_and_fail_naming_the_resource(
    make_sandbox: SandboxFactory, sync: Sync, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = make_sandbox({"opportunity": 150})
    sandbox.faults.inject("opportunity", [503] * 5, offset=100)

    result = sync(sandbox, selection="crm/opportunity", **FAST)

    assert not result.success
    assert statuses_at(sandbox, "opportunity", 100) == [503] * 4
    message = failure_message(result)
    assert (
        "CRM resource 'opportunity': GET /v1/opportunity at offset 100 answered HTTP 503" in message
    )
    assert "gave up after 4 attempts" in message
    assert_key_nowhere(result, caplog)


def test_a_permanent_status_fails_at_once_and_keeps_the_last_good_sync(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = make_sandbox({"contact": 220})
    assert sync(sandbox, selection="crm/contact").success
    good = warehouse_records(warehouse, "contact")
    sandbox.store.update("contact", 1, {"first_name": "Changed"})
    sandbox.faults.inject("contact", [404], offset=200)

    result = sync(sandbox, selection="crm/contact", **FAST)

    assert not result.success
    assert statuses_at(sandbox, "contact", 200) == [200, 404]  # the good sync's, then one try
    message = failure_message(result)
    assert "CRM resource 'contact': GET /v1/contact at offset 200 answered HTTP 404" in message
    assert "not retried" in message
    assert warehouse_records(warehouse, "contact") == good
    assert_key_nowhere(result, caplog)


def test_wrong_key_fails_with_a_hint_and_never_echoes_the_key(
    sandbox: SandboxServer, sync: Sync, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-key-0e41d77b"

    result = sync(sandbox, api_key=wrong)

    assert not result.success
    message = failure_message(result)
    assert "HTTP 401" in message
    assert "CRM_API_KEY" in message
    assert all(wrong not in repr(event) for event in result.all_events)
    assert wrong not in caplog.text


def test_connection_errors_fail_the_sync_naming_where_and_the_attempts(
    sandbox: SandboxServer, sync: Sync, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.stop()
    sandbox.port = free_port()

    result = sync(sandbox, selection="crm/account", **FAST)

    assert not result.success
    message = failure_message(result)
    assert "GET /v1/account at offset 0 failed with ConnectionError after 4 attempts" in message
    assert_key_nowhere(result, caplog)
