"""The CRM REST API contract from the seed document, in dlt `rest_api_source` config shape.

Adding a CRM resource is one entry in `CRM_RESOURCES`; everything shared sits in
`resource_defaults`, as dlt's docs lay it out.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.jsonpath import JSONPath, compile_path
from dlt.extract.resource import DltResource
from dlt.extract.source import DltSource
from dlt.sources.helpers.rest_client.utils import join_url
from dlt.sources.rest_api import RESTAPIConfig, rest_api_source
from requests import PreparedRequest, Request, Session

from crm_assets.source.batches import (
    ARROW_NORMALIZER_CONFIG,
    DLT_ROW_COLUMNS,
    ArrowBatcher,
    GatedPages,
    add_quarantine_table,
    quiet_json_as_text,
)
from crm_assets.source.history import add_history_table
from crm_assets.source.ledger import SyncLedger
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.source.prefetch import PagePrefetcher
from crm_assets.source.records import RecordGate
from crm_assets.source.schema import PRIMARY_KEY, dlt_columns

SOURCE_NAME = "crm"
DEFAULT_PAGE_SIZE = 100
DEFAULT_MAX_RECORDS = 100_000_000  # per resource: generous, but a `total` of 10**12 is refused
API_KEY_PARAM = "api_key"  # sent in the query string
# New tables and columns evolve; a loaded column never silently changes type (dlt would add a
# variant column). Declared columns never get that far: see records.py.
SCHEMA_CONTRACT = {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}

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


def iso_utc(moment: datetime) -> str:
    """How the cursor goes into the filter parameter: ISO 8601 in UTC, `Z` for the offset."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Incremental:
    """Opt-in incremental sync: the API's filter parameter, and where each resource resumes.

    `since` holds, per resource, the newest `cursor_field` value already in the warehouse (None:
    nothing yet, so everything is read). Taking it from the table rather than from a separate
    cursor means a full sync moves it too, and it can never disagree with the data.
    """

    param: str  # e.g. "updated_since": the API lists records changed at or after its value
    cursor_field: str = "updated_at"
    since: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncOptions:
    """How one sync reads the API, besides where and with which key."""

    session: Session | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    ledger: SyncLedger = field(default_factory=SyncLedger)
    strict: bool = False  # withhold whole records instead of values that do not fit
    strip_nul: bool = False  # the warehouse refuses NUL in text (PostgreSQL): remove, count
    prefetcher: PagePrefetcher | None = None  # fetch pages ahead, concurrently
    incremental: Incremental | None = None  # only records changed since the last sync
    max_records: int | None = DEFAULT_MAX_RECORDS  # per resource; a larger `total` is refused
    history: frozenset[str] = frozenset()  # resources that also keep every version (history.py)


def _filter(name: str, options: SyncOptions) -> dict[str, str]:
    """The incremental filter for one resource's requests ({} on a full sync)."""
    since = options.incremental.since.get(name) if options.incremental else None
    if options.incremental is None or since is None:
        return {}
    # inclusive: a record changed in the same instant as the newest one loaded is read again
    return {options.incremental.param: iso_utc(since)}


@functools.cache
def _records_path() -> JSONPath:
    """`data`, compiled once: dlt compiles a string selector anew for every page (~2 ms each)."""
    return compile_path("data")


def _endpoint(name: str, options: SyncOptions) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "path": endpoint_path(name),
        "method": "GET",
        "data_selector": _records_path(),
        # {"type": "offset", "limit": page_size}, advancing by records received
        "paginator": CrmOffsetPaginator(options.page_size, options.max_records),
    }
    if params := _filter(name, options):
        endpoint["params"] = params
    return endpoint


def _first_page(base_url: str, api_key: str, name: str, options: SyncOptions) -> PreparedRequest:
    """The request dlt's client will send first for `name`, to fetch it before dlt gets there."""
    params = {
        **_filter(name, options),
        "offset": 0,
        "limit": options.page_size,
        API_KEY_PARAM: api_key,
    }
    request = Request("GET", join_url(base_url, endpoint_path(name)), params=params)
    # Through the session, so it carries the session's headers as dlt's requests do.
    return options.session.prepare_request(request) if options.session else request.prepare()


def rest_api_config(
    base_url: str, api_key: str, options: SyncOptions | None = None
) -> RESTAPIConfig:
    """The seed's config dict, with the caller's secret and HTTP session filled in.

    Each resource also gets its declared columns; the paginator tells the ledger every total.
    """
    options = options or SyncOptions()
    client: dict[str, Any] = {
        "base_url": base_url,
        "auth": {"type": "api_key", "name": API_KEY_PARAM, "api_key": api_key, "location": "query"},
    }
    if options.session is not None:
        client["session"] = options.session
    return {
        "client": client,  # type: ignore[typeddict-item]
        "resource_defaults": {
            "primary_key": PRIMARY_KEY,
            "write_disposition": "merge",
            "schema_contract": SCHEMA_CONTRACT,
        },
        "resources": [
            {
                "columns": [*dlt_columns(resource["name"]), *DLT_ROW_COLUMNS],
                **resource,
                "endpoint": {
                    **_endpoint(resource["name"], options),
                    **resource.get("endpoint", {}),
                },
            }
            for resource in CRM_RESOURCES
        ],
    }


def _gate(resource: DltResource, options: SyncOptions) -> None:
    """Adds the record gate to a `rest_api` resource, as a step on its pages; its rejections
    go to `_quarantine` in the same load."""
    name = resource.name
    gate = RecordGate(name, options.ledger[name], options.strict, strip_nul=options.strip_nul)
    key = next((c for c in gate.columns if c.is_primary_key), None)
    id_type = key.data_type if key else "bigint"
    history = add_history_table(resource) if name in options.history else None
    resource.add_step(GatedPages(gate, ArrowBatcher(name, gate.columns), id_type, history))
    add_quarantine_table(resource)


def crm_source(
    base_url: str,
    api_key: str,
    options: SyncOptions | None = None,
    warm_now: Collection[str] = (),
) -> DltSource:
    """The seed's `rest_api_source`, its pages through the record gate (a step on each
    resource, see `batches.py`); fresh per call: dagster-dlt 0.29.27 cannot run one `DltSource`
    twice.

    With a prefetcher, the first page of each resource in `warm_now` (the run's selection) is
    requested right away, and the rest fetched ahead concurrently while dlt reads the
    resources in turn.
    """
    options = options or SyncOptions()
    if options.prefetcher is not None:
        for name in warm_now:  # before dlt builds anything: paging overlaps its start-up
            options.prefetcher.warm(_first_page(base_url, api_key, name, options))
    quiet_json_as_text(crm_resource_names())
    for key, value in ARROW_NORMALIZER_CONFIG.items():
        dlt.config[key] = value
    source = rest_api_source(rest_api_config(base_url, api_key, options), name=SOURCE_NAME)
    for name in crm_resource_names():
        _gate(source.resources[name], options)
    return source
