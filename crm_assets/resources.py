"""Dagster resources: the CRM API (where, which key, how to page and retry) and the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
import duckdb
from dlt.destinations.sql_client import SqlClientBase
from dlt.extract.source import DltSource
from pydantic import Field

from crm_assets.contract import DEFAULT_PAGE_SIZE, SOURCE_NAME, crm_source
from crm_assets.http import RetryPolicy, build_session
from crm_assets.ledger import SyncLedger

DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
DEFAULT_DATASET = "crm"
ANALYTICS_SCHEMA = "analytics"  # models built from the CRM tables
PIPELINE_NAME = "crm_api"  # one dlt pipeline per source
# Every asset that writes the warehouse runs in this pool; .dagster/dagster.yaml limits it to 1,
# so two launches queue instead of failing on DuckDB's "Conflicting lock is held".
WAREHOUSE_POOL = "crm_warehouse"


class CrmConfigError(ValueError):
    """Configuration that cannot work; says which setting to change."""


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
    newest_first_params: dict[str, str] = Field(
        default={"sort": "-updated_at"},
        description="Query params that make the API list newest `updated_at` first ({} if none)",
    )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_factor, self.max_retry_delay_s)

    def resolved_base_url(self) -> str:
        url = self.base_url or dlt.config.get(f"sources.{SOURCE_NAME}.base_url", str)
        if not url:
            raise CrmConfigError(
                "CRM API base URL is not set: set CRM_API_BASE_URL or"
                f" sources.{SOURCE_NAME}.base_url in .dlt/config.toml"
            )
        return url

    def resolved_api_key(self) -> str:
        key = self.api_key or dlt.secrets.get(f"sources.{SOURCE_NAME}.api_key", str)
        if not key:
            raise CrmConfigError(
                f"CRM API key is not set: set CRM_API_KEY or sources.{SOURCE_NAME}.api_key"
                " in .dlt/secrets.toml"
            )
        return key

    def build_source(self, ledger: SyncLedger | None = None) -> DltSource:
        """A fresh dlt source with this config's key and session; built per run, never shared."""
        session = build_session(self.timeout_s, self.retry_policy)
        return crm_source(
            self.resolved_base_url(), self.resolved_api_key(), session, self.page_size, ledger
        )


class WarehouseResource(dg.ConfigurableResource):
    """Where CRM tables land: a DuckDB file, tables in schema `dataset_name`."""

    duckdb_path: str = Field(
        default=DEFAULT_DUCKDB_PATH, description="DuckDB file; CRM_DUCKDB_PATH"
    )
    dataset_name: str = Field(default=DEFAULT_DATASET, description="Schema the tables land in")

    @property
    def path(self) -> Path:
        return Path(self.duckdb_path).expanduser().resolve()

    def dlt_pipeline(self, pipeline_name: str) -> dlt.Pipeline:
        """A dlt pipeline into this warehouse; its local state sits next to the DuckDB file."""
        if self.path.stem in (self.dataset_name, ANALYTICS_SCHEMA):
            # DuckDB then fails with "Ambiguous reference to catalog or schema".
            raise CrmConfigError(
                f"DuckDB file {self.path.name!r} has the same stem as schema"
                f" {self.path.stem!r}; rename the file (CRM_DUCKDB_PATH) or the dataset"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.pipeline(
            pipeline_name=pipeline_name,
            destination=dlt.destinations.duckdb(credentials=str(self.path)),
            dataset_name=self.dataset_name,
            pipelines_dir=str(self.path.parent / "dlt_pipelines"),
        )

    @contextmanager
    def sql_client(self) -> Iterator[SqlClientBase]:
        """dlt's SQL client on the CRM dataset: the same SQL path on every destination."""
        with self.dlt_pipeline(PIPELINE_NAME).sql_client() as client:
            yield client

    def stored_columns(self, table: str) -> dict[str, Any]:
        """A table's columns as the warehouse has them, in dlt's types ({} if no table)."""
        with self.dlt_pipeline(PIPELINE_NAME).destination_client() as client:
            return dict(client.get_storage_table(table)[1])  # type: ignore[attr-defined]

    @contextmanager
    def connect(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for queries and checks; closed on exit so dlt can write again."""
        connection = duckdb.connect(str(self.path), read_only=read_only)
        try:
            yield connection
        finally:
            connection.close()
