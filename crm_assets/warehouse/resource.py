"""The warehouse as a Dagster resource: which database, which dataset, the dlt pipeline into it."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import dlt
import duckdb
from dlt.destinations.job_client_impl import SqlJobClientBase
from dlt.destinations.sql_client import SqlClientBase
from pydantic import Field

from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.destinations import DESTINATIONS, Destination

DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
DEFAULT_DATASET = "crm"
ANALYTICS_SCHEMA = "analytics"  # models built from the CRM tables
PIPELINE_NAME = "crm_api"  # one dlt pipeline per source
# Every asset that writes the warehouse runs in this pool; .dagster/dagster.yaml limits it to 1,
# so two launches queue instead of failing on DuckDB's "Conflicting lock is held".
WAREHOUSE_POOL = "crm_warehouse"
DEFAULT_DESTINATION = "duckdb"
_LOCK_HELD = "Conflicting lock"  # DuckDB's IOException when another process has the file open

_ABANDONED_AFTER_S = 24 * 3600  # a run's working directory left by a killed process

logger = logging.getLogger(__name__)


class WarehouseBusyError(TimeoutError):
    """The DuckDB file stayed locked by another process for all of `duckdb_lock_wait_s`."""


def _sweep(folder: Path, older_than_s: float) -> None:
    """Removes what killed runs left in `folder` (each run removes its own when it ends)."""
    cutoff = time.time() - older_than_s
    for child in folder.glob("*") if folder.is_dir() else ():
        if child.stat().st_mtime < cutoff:
            shutil.rmtree(child, ignore_errors=True)


def open_duckdb(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    """Opens the DuckDB file, waiting up to `wait_s` while another process holds its lock.

    A step of the warehouse pool can start while the previous step's process is still exiting
    (Dagster frees the slot on STEP_SUCCESS), and someone may have the file open in a DuckDB
    shell for a moment: both are a short wait, not a failed sync.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if _LOCK_HELD not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"DuckDB file {path} is held by another process after waiting {wait_s:g} s"
                    f" ({str(error).split(': ', 2)[-1]}); close it or raise duckdb_lock_wait_s"
                ) from None
            if delay == 0.05:
                logger.info(f"DuckDB file {path} is held by another process; waiting")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class WarehouseResource(dg.ConfigurableResource):
    """Where CRM tables land: a DuckDB file by default, or Postgres; tables in `dataset_name`."""

    destination: str = Field(
        default=DEFAULT_DESTINATION,
        description=f"dlt destination, one of {', '.join(DESTINATIONS)}; CRM_DESTINATION",
    )
    duckdb_path: str = Field(
        default=DEFAULT_DUCKDB_PATH, description="DuckDB file; CRM_DUCKDB_PATH"
    )
    postgres_url: str | None = Field(
        default=None,
        description=(
            "postgresql://user:password@host:port/database; CRM_POSTGRES_URL (else dlt's"
            " destination.postgres.credentials)"
        ),
    )
    dataset_name: str = Field(default=DEFAULT_DATASET, description="Schema the tables land in")
    loader_file_format: str | None = Field(
        default=None,
        description="dlt loader file format; default: the fastest measured for the destination",
    )

    duckdb_memory_limit: str = Field(
        default="40MB",
        description=(
            "DuckDB's memory_limit for loads at first: it spills to disk beyond it, so a sync's"
            " memory stays flat however large the tables grow. A load job that runs out of"
            " memory (wide records need more) is retried with more, up to"
            " duckdb_max_memory_limit"
        ),
    )
    duckdb_max_memory_limit: str | None = Field(
        default=None,
        description=(
            "How far a load may raise DuckDB's memory_limit when it runs out of memory; default"
            " half the machine's memory (the container's, if limited)"
        ),
    )
    duckdb_threads: int = Field(
        default=1,
        ge=1,
        description=(
            "DuckDB threads for loads: each holds its own buffers, so one keeps a 1M-record"
            " merge within memory_limit; more load faster and use more memory"
        ),
    )

    duckdb_lock_wait_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "How long a step waits for another process to release the DuckDB file before it fails"
        ),
    )

    @property
    def path(self) -> Path:
        return Path(self.duckdb_path).expanduser().resolve()

    @property
    def file_format(self) -> str:
        return self.loader_file_format or self._destination().loader_file_format

    @property
    def refuses_nul(self) -> bool:
        """Whether text sent to this warehouse must lose its NUL characters (PostgreSQL's)."""
        return self._destination().refuses_nul

    @property
    def is_duckdb(self) -> bool:
        return self.destination == "duckdb"

    def table_name(self, table: str, schema: str | None = None) -> str:
        """`database.schema.table` as SQL on the warehouse names it (the UI's Storage line):
        a DuckDB file's catalog is its stem; Postgres's database comes from the URL, if any."""
        if self.is_duckdb:
            database = self.path.stem
        else:
            database = urlsplit(self.postgres_url).path.lstrip("/") if self.postgres_url else ""
        parts = (database, schema or self.dataset_name, table)
        return ".".join(part for part in parts if part)

    def secrets(self) -> list[str]:
        """What a sync masks in logs and errors besides the API key: the warehouse password."""
        password = urlsplit(self.postgres_url).password if self.postgres_url else None
        return [password, unquote(password)] if password else []

    def _checked_destination(self) -> Destination:
        """The destination, once the configuration is known to work; makes the state folder."""
        destination = self._destination()
        if self.is_duckdb and self.path.stem in (self.dataset_name, ANALYTICS_SCHEMA):
            # DuckDB then fails with "Ambiguous reference to catalog or schema".
            raise CrmConfigError(
                f"DuckDB file {self.path.name!r} has the same stem as schema"
                f" {self.path.stem!r}; rename the file (CRM_DUCKDB_PATH) or the dataset"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return destination

    def _destination(self) -> Destination:
        if self.destination not in DESTINATIONS:
            raise CrmConfigError(
                f"destination {self.destination!r} is not one of {', '.join(DESTINATIONS)}"
                " (CRM_DESTINATION)"
            )
        return DESTINATIONS[self.destination]

    @property
    def pipelines_dir(self) -> Path:
        """dlt's local working directory (state, packages): next to the DuckDB file."""
        return self.path.parent / "dlt_pipelines"

    def dlt_pipeline(
        self,
        pipeline_name: str = PIPELINE_NAME,
        connection: duckdb.DuckDBPyConnection | None = None,
        pipelines_dir: Path | None = None,
    ) -> dlt.Pipeline:
        """A dlt pipeline into this warehouse, working in `pipelines_dir` (default: the shared
        one). With `connection` (open on the DuckDB file), dlt works through it."""
        return dlt.pipeline(
            pipeline_name=pipeline_name,
            destination=self._checked_destination().build(self, connection),
            dataset_name=self.dataset_name,
            pipelines_dir=str(pipelines_dir or self.pipelines_dir),
        )

    @contextmanager
    def open_pipeline(
        self, pipeline_name: str = PIPELINE_NAME, run_id: str | None = None
    ) -> Iterator[dlt.Pipeline]:
        """The pipeline with the warehouse open for the block. On DuckDB that is one connection,
        opened once the file's lock is free: dlt otherwise opens the file anew, and checkpoints
        it on close, for every load job.

        Elsewhere syncs may load at once (the pool allows it), and dagster-dlt drops the
        pipeline's working directory when a run starts: a sync (`run_id`) then works in a
        directory of its own, removed afterwards.
        """
        if self.is_duckdb:
            self._checked_destination()  # our message for a bad configuration, and the folder
            with self._duckdb(read_only=False) as connection:
                yield self.dlt_pipeline(pipeline_name, connection)
        elif run_id is None:
            yield self.dlt_pipeline(pipeline_name)
        else:
            runs = self.pipelines_dir / "runs"
            _sweep(runs, older_than_s=_ABANDONED_AFTER_S)
            try:
                yield self.dlt_pipeline(pipeline_name, pipelines_dir=runs / run_id)
            finally:
                shutil.rmtree(runs / run_id, ignore_errors=True)

    @contextmanager
    def sql_client(self) -> Iterator[SqlClientBase]:
        """dlt's SQL client on the CRM dataset: the same SQL path on every destination."""
        with self.open_pipeline() as pipeline, pipeline.sql_client() as client:
            yield client

    @contextmanager
    def destination_client(self) -> Iterator[SqlJobClientBase]:
        """dlt's client on the CRM dataset: the tables as stored (`stored_columns`), and SQL
        through its `sql_client`; one opening for several questions."""
        with self.open_pipeline() as pipeline, pipeline.destination_client() as client:
            yield client  # type: ignore[misc]

    @contextmanager
    def _duckdb(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        connection = open_duckdb(self.path, read_only, self.duckdb_lock_wait_s)
        try:
            yield connection
        finally:
            connection.close()

    @contextmanager
    def connect(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection for the demo's and tests' queries; closed on exit so dlt can
        write again. Everything else queries through `sql_client`, on any destination."""
        if not self.is_duckdb:
            raise NotImplementedError(
                f"connect() opens the DuckDB file; on {self.destination} use sql_client()"
            )
        with self._duckdb(read_only) as connection:
            yield connection

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WarehouseResource:
        """The warehouse the CRM_* variables describe, with their values read: for naming
        tables in the definitions and for the demo's summary (the code location's resource
        keeps secrets as `EnvVar`s)."""
        return cls(
            destination=environ.get("CRM_DESTINATION") or DEFAULT_DESTINATION,
            duckdb_path=environ.get("CRM_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH,
            postgres_url=environ.get("CRM_POSTGRES_URL") or None,
            dataset_name=environ.get("CRM_DATASET") or DEFAULT_DATASET,
        )
