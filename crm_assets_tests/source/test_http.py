"""Retry policy end to end: which statuses are retried, how often, how long between attempts."""

import io
import itertools
from decimal import Decimal

import dagster as dg
import pytest
from requests import Request, Response

from crm_assets.source.http import (
    RETRY_STATUSES,
    RetryPolicy,
    bounded_body,
    build_session,
    parse_json_once,
)
from crm_assets.source.paging import CrmResponseError
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync, free_port
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer

FAST = {"backoff_factor": 0.05}  # waits 0.05 s, 0.1 s, 0.2 s


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the step's error and everything chained to it."""
    (failure,) = result.get_step_failure_events()
    error, messages = failure.step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return "\n".join(messages)


def assert_key_nowhere(result: dg.ExecuteInProcessResult, caplog: pytest.LogCaptureFixture) -> None:
    assert all(TEST_KEY not in repr(event) for event in result.all_events)
    assert TEST_KEY not in caplog.text


def waits_between(sandbox: SandboxServer, resource: str, offset: int) -> list[float]:
    stamps = [r.at for r in sandbox.faults.requests_for(resource) if r.offset == offset]
    return [later - earlier for earlier, later in itertools.pairwise(stamps)]


def statuses_at(sandbox: SandboxServer, resource: str, offset: int) -> list[int]:
    return [r.status for r in sandbox.faults.requests_for(resource) if r.offset == offset]


def test_default_policy_is_the_seeds() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.max_attempts, policy.backoff_factor) == (3, 4, 2.0)
    assert policy.statuses == RETRY_STATUSES == (429, 500, 502, 503, 504)


@pytest.mark.parametrize("status", RETRY_STATUSES)
def test_transient_status_is_retried_with_exponential_backoff_and_the_sync_completes(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource, status: int
) -> None:
    sandbox = make_sandbox({"account": 250})
    sandbox.faults.inject("account", [status, status, status], offset=100)

    result = sync(sandbox, selection="crm/account", **FAST)

    assert result.success
    assert statuses_at(sandbox, "account", 100) == [status, status, status, 200]
    assert statuses_at(sandbox, "account", 0) == statuses_at(sandbox, "account", 200) == [200]
    for wait, expected in zip(
        waits_between(sandbox, "account", 100), (0.05, 0.1, 0.2), strict=True
    ):
        assert expected <= wait < expected + 0.5
    assert_same_records(sandbox.store.records("account"), warehouse_records(warehouse, "account"))


def test_retry_after_is_honoured_over_the_backoff(make_sandbox: SandboxFactory, sync: Sync) -> None:
    sandbox = make_sandbox({"lead": 50})
    sandbox.faults.inject("lead", [429], offset=0, retry_after_s=1)

    assert sync(sandbox, selection="crm/lead", backoff_factor=0.01).success

    (wait,) = waits_between(sandbox, "lead", 0)
    assert 1.0 <= wait < 1.5


def test_retry_after_is_capped(make_sandbox: SandboxFactory, sync: Sync) -> None:
    sandbox = make_sandbox({"lead": 50})
    sandbox.faults.inject("lead", [429], offset=0, retry_after_s=120)

    assert sync(sandbox, selection="crm/lead", backoff_factor=0.01, max_retry_delay_s=0.2).success

    (wait,) = waits_between(sandbox, "lead", 0)
    assert 0.2 <= wait < 1.0


def test_retries_give_up_after_three_and_fail_naming_the_resource(
    make_sandbox: SandboxFactory, sync: Sync, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = make_sandbox({"opportunity": 150})
    sandbox.faults.inject("opportunity", [503] * 4, offset=100)

    result = sync(sandbox, selection="crm/opportunity", **FAST)

    assert not result.success
    assert statuses_at(sandbox, "opportunity", 100) == [503] * 4
    message = failure_message(result)
    assert (
        "CRM resource 'opportunity': GET /v1/opportunity at offset 100 answered HTTP 503" in message
    )
    assert "gave up after 4 attempts" in message
    assert_key_nowhere(result, caplog)


@pytest.mark.slow
def test_seed_policy_waits_2_4_8_seconds_then_gives_up(
    make_sandbox: SandboxFactory, sync: Sync
) -> None:
    sandbox = make_sandbox({"lead": 10})
    sandbox.faults.inject("lead", [503] * 5, offset=0)

    result = sync(sandbox, selection="crm/lead")  # the resource's defaults: 3 retries, factor 2

    assert not result.success
    assert statuses_at(sandbox, "lead", 0) == [503] * 4
    for wait, expected in zip(waits_between(sandbox, "lead", 0), (2, 4, 8), strict=True):
        assert expected <= wait < expected + 0.75


@pytest.mark.parametrize("status", [400, 401, 403, 404, 501])
def test_permanent_status_fails_at_once_and_keeps_the_last_good_sync(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    sandbox = make_sandbox({"contact": 220})
    assert sync(sandbox, selection="crm/contact").success
    good = warehouse_records(warehouse, "contact")
    sandbox.store.update("contact", 1, {"first_name": "Changed"})
    sandbox.faults.inject("contact", [status], offset=200)

    result = sync(sandbox, selection="crm/contact", **FAST)

    assert not result.success
    assert statuses_at(sandbox, "contact", 200) == [200, status]  # the good sync's, then one try
    message = failure_message(result)
    assert (
        f"CRM resource 'contact': GET /v1/contact at offset 200 answered HTTP {status}" in message
    )
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


def test_connection_errors_are_retried_then_reported(
    sandbox: SandboxServer, sync: Sync, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.stop()
    sandbox.port = free_port()

    result = sync(sandbox, selection="crm/account", **FAST)

    assert not result.success
    message = failure_message(result)
    assert "GET /v1/account at offset 0 failed with ConnectionError after 4 attempts" in message
    assert_key_nowhere(result, caplog)


def test_read_timeouts_are_retried(make_sandbox: SandboxFactory, sync: Sync) -> None:
    sandbox = make_sandbox({"lead": 5}, latency_ms=400)

    result = sync(sandbox, selection="crm/lead", timeout_s=0.1, max_retries=1, backoff_factor=0.01)

    assert not result.success
    assert "failed with ReadTimeout after 2 attempts" in failure_message(result)
    assert len(sandbox.faults.requests_for("lead")) == 2


def test_session_retries_only_the_listed_statuses(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"lead": 1})
    sandbox.faults.inject("lead", [500, 501])
    session = build_session(5, RetryPolicy(backoff_factor=0.01))
    url = f"{sandbox.base_url}/v1/lead"

    first = session.get(url, params={"api_key": TEST_KEY})  # 500 retried, then 501 returned

    assert first.status_code == 501
    assert [r.status for r in sandbox.faults.log] == [500, 501]


def _streamed(
    body: bytes, url: str = "http://127.0.0.1:1/v1/lead?offset=300&api_key=k"
) -> Response:
    """A response whose body is still unread, as a hook sees it."""
    response = Response()
    response.status_code = 200
    response.headers["content-type"] = "application/json"
    response.raw = io.BytesIO(body)
    response.request = Request("GET", url).prepare()
    response.url = url
    return response


def test_a_body_over_the_cap_is_refused_naming_path_and_offset() -> None:
    read = bounded_body(1000)

    assert read(_streamed(b"x" * 1000)).content == b"x" * 1000
    with pytest.raises(CrmResponseError) as raised:
        read(_streamed(b"x" * 1001))
    assert str(raised.value) == "GET /v1/lead at offset 300: response body larger than 1,000 bytes"
    declared = _streamed(b"")
    declared.headers["content-length"] = str(10**12)  # refused before reading anything
    with pytest.raises(CrmResponseError):
        read(declared)


def test_json_nested_past_the_parser_limit_is_refused_clearly() -> None:
    deep = _streamed(b"[" * 2000 + b"]" * 2000)
    deep = bounded_body(10**6)(deep)

    with pytest.raises(CrmResponseError) as raised:
        parse_json_once(deep).json()  # parsed when first read, as dlt's client reads it

    assert "at offset 300: JSON nested deeper than 1024 levels" in str(raised.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_fails_naming_only_the_host(
    make_sandbox: SandboxFactory, sync: Sync, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # The sandbox redirects to another host with the query string, key included, along.
    sandbox = make_sandbox({"lead": 150})
    sandbox.faults.inject("lead", [status], offset=100)

    result = sync(sandbox, selection="crm/lead", **FAST)

    assert not result.success
    message = failure_message(result)
    assert (
        f"GET /v1/lead at offset 100: answered HTTP {status}, a redirect to elsewhere.invalid;"
        " not followed" in message
    )
    assert statuses_at(sandbox, "lead", 100) == [status]  # asked once, not retried
    assert_key_nowhere(result, caplog)


def test_numbers_a_double_cannot_hold_are_parsed_exactly() -> None:
    body = (
        b'{"data": [{"id": 18446744073709551615, "wide": 18446744073709551616,'
        b' "idr": 4512345678901234.56, "rate": 0.25, "fx": 1234.567891}], "total": 1}'
    )
    page = _streamed(body)
    page.headers["content-type"] = "application/json"

    (record,) = parse_json_once(bounded_body(10**6)(page)).json()["data"]

    assert record == {
        "id": 18446744073709551615,
        "wide": 18446744073709551616,  # past 64 bits: orjson alone makes it a float
        "idr": Decimal("4512345678901234.56"),  # 18 digits: a double keeps 17
        "rate": 0.25,
        "fx": 1234.567891,  # a double holds it: stays a float, as every other page has it
    }
    assert type(record["rate"]) is float
    assert type(record["fx"]) is float
