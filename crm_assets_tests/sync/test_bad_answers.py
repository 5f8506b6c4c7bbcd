"""The catalogue of bad answers, each served by the sandbox in the middle of a read.

Every one is refused where it happened (path and offset), read through the sync's own session,
dlt's REST client and the sync's paginator. One of each family (the transport, the body, the
page) then runs as a whole sync: it fails with a message naming the resource and the offset,
holding neither the key nor anything from the records, and leaves the warehouse file exactly as
the last good sync left it, although other resources read fine and the data changed upstream.
"""

import hashlib
from pathlib import Path

import pytest
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from requests import RequestException

from crm_assets.source.errors import CrmResponseError, where
from crm_assets.source.http import RetryPolicy, build_session
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync
from crm_assets_tests.support import (
    FAST,
    assert_key_nowhere,
    failure_message,
    recorded_waits,
    statuses_at,
)
from crm_sandbox import SandboxServer
from crm_sandbox.bad_answers import BAD_ANSWERS

OFFSET = 200  # the third page of contact's four
ATTEMPTS = 4  # the seed's policy: a retried fault is served on every attempt

# kind -> what the message says was wrong
CATALOGUE = {
    "html_200": "answered 'text/html', not JSON",
    "truncated_json": "the body is not valid JSON (cut short?)",
    "empty_body": "answered an empty body, not JSON",
    "data_object": "response has no 'data' list",
    "data_string": "response has no 'data' list",
    "total_negative": "response has no whole, non-negative 'total'",
    "total_string": "response has no whole, non-negative 'total'",
    "total_unreachable": "no records, though 'total' is",
    "non_object_records": "is a str, not an object",
    "duplicate_ids": "1 record(s) repeat an id of the page",
    "repeated_page": "the page repeats the one before it (same ids)",
    "oversized_body": "response body larger than 1,048,576 bytes",
    "deep_nesting": "JSON nested deeper than 1024 levels",
    "wrong_content_type": "answered 'text/plain', not JSON",
    "reset_mid_body": f"failed with ChunkedEncodingError after {ATTEMPTS} attempts",
    "redirect": "answered HTTP 302, a redirect to elsewhere.invalid; not followed",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _texts_of_records(sandbox: SandboxServer) -> set[str]:
    """Every text value the bad page's records hold (names, emails, ...), to look for."""
    records, _ = sandbox.store.page("contact", OFFSET - 100, 300)
    return {v for r in records for v in r.values() if isinstance(v, str) and len(v) > 4}


# One of each family: refused by the transport, by the body's parse, by the paginator.
WHOLE_SYNC_CASES = ["reset_mid_body", "redirect", "truncated_json", "total_unreachable"]


def test_the_catalogue_covers_every_bad_answer_the_sandbox_serves() -> None:
    assert set(CATALOGUE) == {*BAD_ANSWERS, "redirect"}


def _serve(sandbox: SandboxServer, kind: str) -> int:
    """Serves `kind` at contact's OFFSET; how often it will be asked (a reset is retried)."""
    times = ATTEMPTS if kind == "reset_mid_body" else 1  # the only one worth asking again
    if kind == "redirect":
        sandbox.faults.inject("contact", [302], offset=OFFSET)
    else:
        sandbox.faults.serve_bad("contact", OFFSET, kind, times=times)
    return times


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_a_read_refuses_each_bad_answer_where_it_happened(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    sandbox = make_sandbox({"account": 1, "contact": 400, "lead": 1, "opportunity": 1})
    times = _serve(sandbox, kind)
    recorded_waits(monkeypatch)
    client = RESTClient(
        sandbox.base_url,
        auth=APIKeyAuth(name="api_key", api_key=TEST_KEY, location="query"),
        paginator=CrmOffsetPaginator(100),
        data_selector="data",
        session=build_session(5.0, RetryPolicy(), max_response_bytes=2**20),
    )

    with pytest.raises((CrmResponseError, RequestException)) as refused:
        for _ in client.paginate("/v1/contact"):
            pass

    assert len(statuses_at(sandbox, "contact", OFFSET)) == times
    if isinstance(refused.value, CrmResponseError):
        assert (refused.value.path, str(refused.value.offset)) == ("/v1/contact", str(OFFSET))
        assert CATALOGUE[kind] in str(refused.value)
    else:  # a reset: requests' error, retried until the policy gave up
        assert f"failed with {type(refused.value).__name__} after" in CATALOGUE[kind]
        assert where(refused.value.request.url) == ("/v1/contact", str(OFFSET))
    assert TEST_KEY not in str(refused.value)


@pytest.mark.parametrize("kind", WHOLE_SYNC_CASES)
def test_a_bad_answer_fails_the_sync_where_it_happened_and_loads_nothing(
    make_sandbox: SandboxFactory,
    sync: Sync,
    warehouse: WarehouseResource,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    sandbox = make_sandbox({"account": 50, "contact": 400, "lead": 50, "opportunity": 50})
    assert sync(sandbox).success
    before, asked = _digest(warehouse.path), len(statuses_at(sandbox, "contact", OFFSET))
    sandbox.store.update("account", 3, {"name": "Changed Upstream Ltd"})  # would load if any did
    times = _serve(sandbox, kind)

    result = sync(sandbox, max_response_mb=1, **FAST)

    assert not result.success
    assert len(statuses_at(sandbox, "contact", OFFSET)) - asked == times
    message = failure_message(result)
    assert f"CRM resource 'contact': GET /v1/contact at offset {OFFSET}" in message
    assert CATALOGUE[kind] in message
    assert "Nothing was loaded" in message
    leaked = [text for text in _texts_of_records(sandbox) if text in message]
    assert leaked == []
    assert_key_nowhere(result, caplog)
    assert TEST_KEY not in message
    assert _digest(warehouse.path) == before


@pytest.mark.parametrize("kind", ["duplicate_ids", "repeated_page"])
def test_the_id_and_paging_answers_fail_alike_on_a_foreign_crm_with_a_smaller_page_cap(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource, kind: str
) -> None:
    # String ids, other field names, pages of 50: offset 200 is the fifth page here.
    sizes = {"account": 50, "contact": 400, "lead": 50, "opportunity": 50}
    sandbox = make_sandbox(sizes, dialect="foreign", max_page_size=50)
    assert sync(sandbox).success
    before = _digest(warehouse.path)
    sandbox.faults.serve_bad("contact", OFFSET, kind)

    result = sync(sandbox, **FAST)

    message = failure_message(result)
    assert f"CRM resource 'contact': GET /v1/contact at offset {OFFSET}" in message
    assert CATALOGUE[kind] in message
    assert _digest(warehouse.path) == before
