"""The CRM REST API contract from the seed document, in dlt `rest_api_source` config shape.

Adding a CRM resource is one entry in `CRM_RESOURCES`; everything shared sits in
`resource_defaults`, as dlt's docs lay it out.
"""

from __future__ import annotations

from typing import Any

from dlt.extract.source import DltSource
from dlt.sources.rest_api import RESTAPIConfig, rest_api_source
from requests import Session

from crm_assets.paging import CrmOffsetPaginator

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
) -> RESTAPIConfig:
    """The seed's config dict, with the caller's secret and HTTP session filled in."""
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
        },
        "resources": [
            {
                **resource,
                "endpoint": {
                    "path": endpoint_path(resource["name"]),
                    "method": "GET",
                    "data_selector": "data",
                    # {"type": "offset", "limit": page_size}, advancing by records received
                    "paginator": CrmOffsetPaginator(limit=page_size),
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
) -> DltSource:
    """A fresh dlt source per call: dagster-dlt 0.29.27 cannot run one `DltSource` twice."""
    return rest_api_source(rest_api_config(base_url, api_key, session, page_size), name=SOURCE_NAME)
