"""The CRM API as a Dagster resource: where it is, which key, how to page and retry."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from dlt.extract.source import DltSource
from pydantic import Field

from crm_assets.source.config import resolve_api_key, resolve_base_url
from crm_assets.source.contract import DEFAULT_PAGE_SIZE, crm_source
from crm_assets.source.http import RetryPolicy, build_session
from crm_assets.source.ledger import SyncLedger


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
    schema_enforcement: Literal["keep_rows", "strict"] = Field(
        default="keep_rows",
        description=(
            "keep_rows: a value that does not fit its declared column loads as NULL and goes to"
            " _quarantine; strict: the whole record goes there instead. CRM_SCHEMA_ENFORCEMENT"
        ),
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

    def build_source(self, ledger: SyncLedger | None = None) -> DltSource:
        """A fresh dlt source with this config's key and session; built per run, never shared."""
        session = build_session(self.timeout_s, self.retry_policy)
        return crm_source(
            self.resolved_base_url(),
            self.resolved_api_key(),
            session,
            self.page_size,
            ledger,
            strict=self.schema_enforcement == "strict",
        )
