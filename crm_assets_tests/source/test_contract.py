"""The seed's rest_api_source config: shape, defaults, and one entry per resource."""

import dagster as dg
import pytest
from dlt.extract.source import DltSource

from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.source import contract
from crm_assets.source.ledger import SyncLedger
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets_tests.conftest import TEST_KEY
from crm_sandbox import SandboxServer


def test_config_has_the_seed_shape() -> None:
    config = contract.rest_api_config("http://127.0.0.1:1", "k")

    assert config["client"] == {
        "base_url": "http://127.0.0.1:1",
        "auth": {"type": "api_key", "name": "api_key", "api_key": "k", "location": "query"},
    }
    assert config["resource_defaults"] == {
        "primary_key": "id",
        "write_disposition": "merge",
        "schema_contract": {"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
    }
    for resource in config["resources"]:
        endpoint = resource["endpoint"]
        assert endpoint["path"] == f"/v1/{resource['name']}"
        assert (endpoint["method"], str(endpoint["data_selector"])) == ("GET", "data")
        assert isinstance(endpoint["paginator"], CrmOffsetPaginator)
        assert endpoint["paginator"].limit == 100
    assert [r["name"] for r in config["resources"]] == ["account", "contact", "lead", "opportunity"]


def test_each_resource_pages_with_its_own_paginator() -> None:
    config = contract.rest_api_config(
        "http://127.0.0.1:1", "k", contract.SyncOptions(page_size=250)
    )
    paginators = [r["endpoint"]["paginator"] for r in config["resources"]]
    assert len({id(p) for p in paginators}) == 4
    assert {p.limit for p in paginators} == {250}


def test_every_call_builds_a_fresh_source_with_merge_on_id(sandbox: SandboxServer) -> None:
    # dagster-dlt cannot run one DltSource twice: each sync needs its own, sharing no state.
    first, second = (contract.crm_source(sandbox.base_url, TEST_KEY) for _ in range(2))

    assert first.resources["account"] is not second.resources["account"]
    assert _rows(first, "account") == _rows(second, "account") == 250
    account = first.resources["account"]
    assert account.write_disposition == "merge"
    assert first.schema.name == "crm"
    assert account.compute_table_schema()["columns"]["id"]["primary_key"] is True


def _rows(source: DltSource, resource: str) -> int:
    """Rows `resource` yields outside a pipeline (as dicts or arrow tables)."""
    items = list(source.with_resources(resource))
    return sum(getattr(item, "num_rows", 1) for item in items)


def test_a_fifth_resource_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract, "CRM_RESOURCES", (*contract.CRM_RESOURCES, {"name": "task"}))

    assets = build_crm_assets()

    assert dg.AssetKey(["crm", "task"]) in assets.keys
    assert (
        contract.rest_api_config("http://x", "k")["resources"][-1]["endpoint"]["path"] == "/v1/task"
    )


def test_every_page_tells_the_syncs_ledger_its_total(sandbox: SandboxServer) -> None:
    ledger = SyncLedger()
    source = contract.crm_source(sandbox.base_url, TEST_KEY, contract.SyncOptions(ledger=ledger))

    assert _rows(source, "account") == 250
    assert ledger["account"].totals == [250, 250, 250]
    assert ledger["account"].received == 250
