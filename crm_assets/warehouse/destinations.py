"""Where the CRM tables land: one entry per dlt destination, the only place that builds one.

Adding a destination is one entry in `DESTINATIONS` plus its credentials (dlt reads them from
`.dlt/secrets.toml` or `DESTINATION__<NAME>__CREDENTIALS` when the resource has none); the SQL
after a load goes through dlt's SQL client, so it runs wherever dlt loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.libs.sql_alchemy_shims import URL
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.destinations.impl.postgres.factory import postgres as postgres_factory

from crm_assets.warehouse.duckdb_memory import MAX_QUERY_LENGTH, MemoryGovernor
from crm_assets.warehouse.duckdb_memory import duckdb as governed_duckdb
from crm_assets.warehouse.factory import ResolvedOnceFactory


class DestinationSettings(Protocol):
    """What the warehouse resource says about where to load (see WarehouseResource)."""

    duckdb_memory_limit: str
    duckdb_max_memory_limit: str | None
    duckdb_threads: int
    postgres_url: str | None

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class Destination:
    """A dlt destination as this project uses it."""

    build: Callable[[DestinationSettings, Any], Any]  # (settings, open connection) -> dlt's
    loader_file_format: str  # the fastest dlt offers there, measured (see README)
    refuses_nul: bool = False  # text and JSON columns refuse NUL (0x00): the gate removes them


def _duckdb(settings: DestinationSettings, connection: Any = None) -> Any:
    # memory_limit is the governor's: a floor, raised for dlt's retry when a load job runs out
    # of memory (see duckdb_memory.py); dlt would set a global_config value anew on every job.
    governor = MemoryGovernor.from_settings(
        settings.duckdb_memory_limit, settings.duckdb_max_memory_limit
    )
    return governed_duckdb(
        credentials=DuckDbCredentials(
            connection or str(settings.path),
            # Insertion order is meaningless for merged tables and costs memory to keep.
            global_config={"preserve_insertion_order": False, "threads": settings.duckdb_threads},
        ),
        memory_governor=governor,
        # One load job at a time: DuckDB has one writer, and parallel merges only add up
        # their memory.
        loader_parallelism_strategy="sequential",
        # dlt splits insert_values rows into statements of half this: parsed outside memory_limit
        max_query_length=MAX_QUERY_LENGTH,
    )


@configspec(init=False)
class LibpqPostgresCredentials(PostgresCredentials):
    """dlt's Postgres credentials for a URL as libpq takes it, where dlt's refuse it.

    Without a password: libpq finds it in PGPASSWORD or the pgpass file, or the server needs none
    (trust, peer). dlt's `PostgresCredentials` requires one; its base class, and this, do not, and
    the DSN dlt connects with (`to_url`) then has none. With `?host=/socket/dir` and no host
    before the path: a Unix socket. dlt requires a host (it also names the data location by it),
    so the directory is the host here, and back in the query in the DSN.
    """

    password: TSecretStrValue | None = None

    def parse_native_representation(self, native_value: Any) -> None:
        super().parse_native_representation(native_value)
        query = self.query or {}
        if not self.host and query.get("host"):
            self.host = query.pop("host")
            if query.get("port"):
                self.port = int(query.pop("port"))

    def to_url(self) -> URL:
        url = super().to_url()
        if not (self.host or "").startswith("/"):
            return url
        # libpq reads a host before the path as a name; a socket directory goes in the query.
        socket = {"host": self.host, "port": str(self.port)} if self.port else {"host": self.host}
        return url._replace(host=None, port=None).update_query_dict(socket)


class postgres(ResolvedOnceFactory, postgres_factory):  # noqa: N801 - as dlt names them
    """dlt's Postgres destination, its capabilities' configuration resolved once."""


def _postgres(settings: DestinationSettings, connection: Any = None) -> Any:
    # No URL: dlt's own `destination.postgres.credentials` (secrets.toml or the environment).
    url = settings.postgres_url or None
    if url and not (urlsplit(url).password and urlsplit(url).hostname):
        # No password, or a Unix socket. dlt would resolve an unresolved instance as its own
        # PostgresCredentials again, so resolve it here, as dlt does: the URL's values first,
        # then dlt's config (`destination.postgres.credentials.*`) for the fields it lacks.
        credentials = resolve_configuration(
            LibpqPostgresCredentials(), sections=("destination", "postgres"), explicit_value=url
        )
        return postgres(credentials=credentials)
    return postgres(credentials=url)


DESTINATIONS: dict[str, Destination] = {
    # parquet: 3x faster and 6x leaner than insert_values for 50k records here
    "duckdb": Destination(_duckdb, "parquet"),
    # insert_values, not csv: dlt's COPY of a csv file reads an empty string as NULL (it sets
    # FORCE_NULL on every nullable column), and an empty text is not a missing one. csv was
    # faster (4.5 s against 6.4 s for 50k records here) but not exact.
    "postgres": Destination(_postgres, "insert_values", refuses_nul=True),
}
