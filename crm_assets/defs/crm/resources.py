"""The CRM API as a Dagster resource: where it is, which key, how to page and retry."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Literal

import dagster as dg
from dlt.extract.source import DltSource
from pydantic import Field

from crm_assets.source.config import resolve_api_key, resolve_base_url
from crm_assets.source.contract import (
    DEFAULT_MAX_RECORDS,
    DEFAULT_PAGE_SIZE,
    Incremental,
    SyncOptions,
    crm_source,
)
from crm_assets.source.http import RetryPolicy, build_session, install_prefetcher
from crm_assets.source.ledger import SyncLedger
from crm_assets.source.ratelimit import RateLimiter


class CrmApiResource(dg.ConfigurableResource):
    """The CRM REST API. Unset `base_url` / `api_key` fall back to dlt's `sources.crm.*` config."""

    base_url: str | None = Field(
        default=None, description="CRM API root, e.g. https://crm.example.com"
    )
    api_key: str | None = Field(default=None, description="Sent as ?api_key=; set via CRM_API_KEY")
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, description="Records asked per page")
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request connect/read timeout")
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt")
    backoff_factor: float = Field(default=2.0, ge=0, description="Waits factor * 2**(n-1) s")
    max_retry_delay_s: float = Field(default=60.0, gt=0, description="Cap on any wait")
    max_rereads: int = Field(
        default=2,
        ge=0,
        description=(
            "Times a sync reads a resource again when the API's list moved under it (its total"
            " fell, an id came twice, records went missing) before it fails; CRM_MAX_REREADS"
        ),
    )
    schema_enforcement: Literal["keep_rows", "strict"] = Field(
        default="keep_rows",
        description=(
            "keep_rows: a value that does not fit its declared column loads as NULL and goes to"
            " _quarantine; strict: the whole record goes there instead. CRM_SCHEMA_ENFORCEMENT"
        ),
    )
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        description="Requests in flight at once during a sync, all resources together (1: serial)",
    )
    rate_limit_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Client-side cap on requests per second for a whole sync (None: no cap)",
    )
    rate_limit_burst: int = Field(default=1, ge=1, description="Requests allowed at once")
    incremental_param: str | None = Field(
        default=None,
        description=(
            "Opt-in incremental sync: the API's filter parameter listing records changed since"
            " a time (e.g. updated_since); None: every sync reads everything. CRM_INCREMENTAL_PARAM"
        ),
    )
    cursor_field: str = Field(
        default="updated_at", description="The record field the incremental filter compares"
    )
    max_response_mb: int = Field(
        default=64, gt=0, description="A response body larger than this fails the sync"
    )
    max_records_per_resource: int = Field(
        default=DEFAULT_MAX_RECORDS,
        gt=0,
        description="An API 'total' above this fails the sync: paging would not end",
    )
    progress_every_s: float = Field(
        default=5.0, gt=0, description="Seconds between progress lines in the run log"
    )
    newest_first_params: dict[str, str] = Field(
        default={"sort": "-updated_at"},
        description="Query params that make the API list newest `updated_at` first ({} if none)",
    )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_factor, self.max_retry_delay_s)

    def resolved_base_url(self) -> str:
        return resolve_base_url(self.base_url)

    def resolved_api_key(self) -> str:
        return resolve_api_key(self.api_key)

    @property
    def is_incremental(self) -> bool:
        """Whether this API is configured for incremental syncs."""
        return bool(self.incremental_param)

    @contextmanager
    def sync_source(
        self,
        ledger: SyncLedger | None = None,
        since: Mapping[str, datetime | None] | None = None,
        selected: Collection[str] = (),
        strip_nul: bool = False,
        history: Collection[str] = (),
    ) -> Iterator[DltSource]:
        """A fresh dlt source for one sync, with its session, rate limit and page prefetcher.

        Built per run, never shared; the prefetcher's threads end when the block does. With
        `since` (per resource) and `incremental_param` set, only changed records are asked for;
        the first pages of the `selected` resources are asked for at once; `strip_nul` for a
        warehouse that refuses NUL characters (PostgreSQL); `history`: the resources whose every
        version is kept too (`<name>_history`).
        """
        limiter = (
            RateLimiter(self.rate_limit_per_s, self.rate_limit_burst)
            if self.rate_limit_per_s
            else None
        )
        session = build_session(
            self.timeout_s,
            self.retry_policy,
            limiter,
            self.max_concurrent_requests,
            self.max_response_mb * 2**20,
        )
        concurrent = self.max_concurrent_requests > 1
        prefetcher = (
            install_prefetcher(session, self.max_concurrent_requests, self.timeout_s)
            if concurrent
            else None
        )
        options = SyncOptions(
            session=session,
            page_size=self.page_size,
            ledger=ledger if ledger is not None else SyncLedger(),
            strict=self.schema_enforcement == "strict",
            strip_nul=strip_nul,
            prefetcher=prefetcher,
            max_records=self.max_records_per_resource,
            history=frozenset(history),
            incremental=(
                Incremental(self.incremental_param, self.cursor_field, since)
                if self.incremental_param and since is not None
                else None
            ),
        )
        try:
            yield crm_source(
                self.resolved_base_url(), self.resolved_api_key(), options, warm_now=selected
            )
        finally:
            if prefetcher is not None:
                prefetcher.close()
