"""The CRM REST API contract from the seed document, in dlt `rest_api_source` config shape.

Adding a CRM resource is one entry in `CRM_RESOURCES`; everything shared sits in
`resource_defaults`, as dlt's docs lay it out.
"""

from __future__ import annotations

from typing import Any

from dlt.extract.source import DltSource
from dlt.sources.rest_api import RESTAPIConfig, rest_api_source
from requests import Session

from crm_assets.source.ledger import SyncLedger
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.source.prefetch import PagePrefetcher
from crm_assets.source.records import RecordGate, is_row
from crm_assets.source.schema import dlt_columns

SOURCE_NAME = "crm"
DEFAULT_PAGE_SIZE = 100
API_KEY_PARAM = "api_key"  # sent in the query string

# One entry per CRM resource: the endpoint is `/v1/<name>`, the table and asset are `<name>`.
CRM_RESOURCES: tuple[dict[str, Any], ...] = (
    {"name": "account"},
    {"name": "contact"},
    {"name": "lead"},
    {"name": "opportunity"},
)


def crm_resource_names() -> list[str]:
    return [resource["name"] for resource in CRM_RESOURCES]


def endpoint_path(resource_name: str) -> str:
    return f"/v1/{resource_name}"


def rest_api_config(
    base_url: str,
    api_key: str,
    session: Session | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    ledger: SyncLedger | None = None,
    strict: bool = False,
    prefetcher: PagePrefetcher | None = None,
) -> RESTAPIConfig:
    """The seed's config dict, with the caller's secret and HTTP session filled in.

    Each resource also gets its declared columns and the record gate (rename, lossless
    conversion, quarantine; `strict` withholds whole records instead of values); `ledger`
    collects what the sync saw, for reconciliation and the drift check.
    """
    ledger = ledger if ledger is not None else SyncLedger()
    client: dict[str, Any] = {
        "base_url": base_url,
        "auth": {"type": "api_key", "name": API_KEY_PARAM, "api_key": api_key, "location": "query"},
    }
    if session is not None:
        client["session"] = session
    return {
        "client": client,  # type: ignore[typeddict-item]
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            # New tables and columns evolve; a loaded column never silently changes type (dlt
            # would add a variant column). Declared columns never get that far: see records.py.
            "schema_contract": {"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
        },
        "resources": [
            {
                "columns": dlt_columns(resource["name"]),
                "processing_steps": [
                    {"map": RecordGate(resource["name"], ledger[resource["name"]], strict)},
                    {"filter": is_row},
                ],
                **resource,
                "endpoint": {
                    "path": endpoint_path(resource["name"]),
                    "method": "GET",
                    "data_selector": "data",
                    # {"type": "offset", "limit": page_size}, advancing by records received
                    "paginator": CrmOffsetPaginator(
                        page_size, ledger[resource["name"]], prefetcher
                    ),
                    **resource.get("endpoint", {}),
                },
            }
            for resource in CRM_RESOURCES
        ],
    }


def crm_source(
    base_url: str,
    api_key: str,
    session: Session | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    ledger: SyncLedger | None = None,
    strict: bool = False,
    prefetcher: PagePrefetcher | None = None,
) -> DltSource:
    """A fresh dlt source per call: dagster-dlt 0.29.27 cannot run one `DltSource` twice.

    The resources extract in parallel (dlt's `parallelized`); with a `prefetcher`, the pages
    of each resource are fetched ahead concurrently too.
    """
    config = rest_api_config(base_url, api_key, session, page_size, ledger, strict, prefetcher)
    return rest_api_source(config, name=SOURCE_NAME, parallelized=True)
