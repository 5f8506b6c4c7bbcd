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

import dlt
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials


class DestinationSettings(Protocol):
    """What the warehouse resource says about where to load (see WarehouseResource)."""

    duckdb_memory_limit: str
    duckdb_threads: int
    postgres_url: str | None

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class Destination:
    """A dlt destination as this project uses it."""

    build: Callable[[DestinationSettings, Any], Any]  # (settings, open connection) -> dlt's
    loader_file_format: str  # the fastest dlt offers there, measured (see README)


def _duckdb(settings: DestinationSettings, connection: Any = None) -> Any:
    return dlt.destinations.duckdb(
        credentials=DuckDbCredentials(
            connection or str(settings.path),
            # Insertion order is meaningless for merged tables and costs memory to keep.
            global_config={
                "memory_limit": settings.duckdb_memory_limit,
                "preserve_insertion_order": False,
                "threads": settings.duckdb_threads,
            },
        ),
        # One load job at a time: DuckDB has one writer, and parallel merges only add up
        # their memory.
        loader_parallelism_strategy="sequential",
    )


def _postgres(settings: DestinationSettings, connection: Any = None) -> Any:
    # No URL: dlt's own `destination.postgres.credentials` (secrets.toml or the environment).
    return dlt.destinations.postgres(credentials=settings.postgres_url or None)


DESTINATIONS: dict[str, Destination] = {
    # parquet: 3x faster and 6x leaner than insert_values for 50k records here
    "duckdb": Destination(_duckdb, "parquet"),
    # csv goes in through COPY: 4.5 s for 50k records here, 6.4 s with insert_values
    "postgres": Destination(_postgres, "csv"),
}
