"""The catalogue of bad answers, each served by the sandbox in the middle of a sync.

Every one fails the sync with a message naming the resource and the offset, holding neither the
key nor anything from the records, and leaves the warehouse file exactly as the last good sync
left it, although other resources read fine and the data changed upstream meanwhile.
"""

import hashlib
from pathlib import Path

import pytest

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, Sync
from crm_assets_tests.source.test_http import (
    FAST,
    assert_key_nowhere,
    failure_message,
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


def test_the_catalogue_covers_every_bad_answer_the_sandbox_serves() -> None:
    assert set(CATALOGUE) == {*BAD_ANSWERS, "redirect"}
    assert len(CATALOGUE) >= 15


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
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
    times = ATTEMPTS if kind == "reset_mid_body" else 1  # the only one worth asking again
    if kind == "redirect":
        sandbox.faults.inject("contact", [302], offset=OFFSET)
    else:
        sandbox.faults.serve_bad("contact", OFFSET, kind, times=times)

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


@pytest.mark.parametrize(
    "kind", ["duplicate_ids", "repeated_page", "non_object_records", "total_unreachable"]
)
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
