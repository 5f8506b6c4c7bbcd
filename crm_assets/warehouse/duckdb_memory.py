"""DuckDB's memory_limit for loads: a low floor, raised when a load job runs out of memory.

A low memory_limit keeps a sync's memory flat: DuckDB spills what does not fit to disk. But some
operators must hold a minimum in memory whatever they spill, and that minimum grows with the
width of a record: dlt's merge deduplicates the staging table with `ROW_NUMBER() OVER (PARTITION
BY <key>)`, and DuckDB's window operator buffers whole rows, 2,048 at a time, with their strings.
Measured (one thread): rows of 0.5 kB fit in 40 MB, 2-4 kB with 1% of 20-60 kB need ~45-50 MB,
rows of 20 kB ~180 MB, of 60 kB ~330 MB. So no fixed limit serves both a flat sync and any record
shape.

Hence a floor (`WarehouseResource.duckdb_memory_limit`) and a ceiling (by default half the
machine's memory, or the container's if that is less), and between them a `MemoryGovernor`
shared by every dlt client of the sync: when a statement runs out of memory, it raises the
connection's memory_limit a step towards the ceiling and lets the error through, so that dlt's own
job retry (up to 5 attempts within the same load) runs the job again with more. The steps reach
the ceiling by the last attempt. A job that runs out of memory at the ceiling fails for good,
with a message that says what to change.

The hook is dlt's own way to specialise a destination (as its MotherDuck destination does): a
destination factory whose job client uses a SQL client of ours.

Memory that memory_limit does not cap: DuckDB parses an `INSERT ... VALUES` statement outside
it, so dlt's insert_values jobs go in statements of `MAX_QUERY_LENGTH / 2` (see there).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import duckdb as duckdb_lib
from dlt.common.configuration import configspec
from dlt.common.configuration.specs.base_configuration import NotResolved
from dlt.common.destination import DestinationCapabilitiesContext
from dlt.common.destination.dataset import DBApiCursor
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.schema import Schema
from dlt.destinations.exceptions import DatabaseTransientException
from dlt.destinations.impl.duckdb.configuration import (
    DuckDbBaseCredentials,
    DuckDbClientConfiguration,
)
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.factory import duckdb as duckdb_factory
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.factory import ResolvedOnceFactory

logger = logging.getLogger(__name__)

# DuckDB parses an INSERT ... VALUES statement in memory memory_limit does not cap, ~100x its
# text (8.8 MB of SQL: +800 MB RSS). dlt sends rows written as insert_values (the `_quarantine`
# dicts) in statements of max_query_length / 2, 16 MiB by default for DuckDB: 2.4 GB at once.
# Statements of 512 KiB cost ~60 MB.
MAX_QUERY_LENGTH = 1024 * 1024
CEILING_SHARE = 0.5  # of the machine's (or container's) memory
ATTEMPTS = 5  # dlt's load.raise_on_max_retries: attempts of a job within one load
MIN_GROWTH = 4.0  # each step at least quadruples: few failed attempts for a wide table
_FALLBACK_MEMORY = 4 * 1024**3  # if the machine's memory cannot be read

_UNITS = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
# DuckDB's words for it, whatever the exception class (BufferManager, TupleDataCollection, ...)
_OUT_OF_MEMORY = (
    "Out of Memory Error",
    "failed to pin block",
    "could not allocate block",
    "failed to allocate data",
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in a DuckDB memory size: "40MB" (1000s), "1.5 GiB" (1024s), "123 bytes"."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"not a memory size: {text!r} (e.g. 40MB, 2GB, 512MiB; KB/MB/GB/TB count in 1000s,"
            " KiB/MiB/GiB/TiB in 1024s)"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """A byte count as DuckDB and a reader take it: "160.0MB", "2.6GB"."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 says "max" when unlimited


def machine_memory(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes of memory this process may use: the machine's RAM, or its container's limit (cgroup
    v2 or v1) if lower. None if unknown."""
    try:
        ram: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    limits = [
        _read_int(cgroup_root / "memory.max"),
        _read_int(cgroup_root / "memory" / "memory.limit_in_bytes"),
    ]
    known = [value for value in (ram, *limits) if value]
    return min(known) if known else None


def default_ceiling(memory: int | None = None) -> int:
    """How high a load may raise memory_limit: half the memory the process may use."""
    memory = memory if memory is not None else machine_memory()
    return int((memory or _FALLBACK_MEMORY) * CEILING_SHARE)


def limit_steps(floor: int, ceiling: int, attempts: int = ATTEMPTS) -> list[int]:
    """The memory_limit of each attempt of a job that keeps running out of memory: from the
    floor, geometrically (at least x`MIN_GROWTH` a step), to the ceiling by the last attempt."""
    if ceiling <= floor or attempts < 2:
        return [floor]
    growth = max(MIN_GROWTH, (ceiling / floor) ** (1 / (attempts - 1)))
    steps = [floor]
    while steps[-1] < ceiling:
        steps.append(min(ceiling, math.ceil(steps[-1] * growth)))
    return steps


@dataclass
class MemoryGovernor:
    """The memory_limit of one sync's DuckDB loads: starts at `floor`, raised by `grow`; every
    dlt client of the sync (one per load job) applies `current` to its connection."""

    floor: int
    ceiling: int
    current: int = 0

    def __post_init__(self) -> None:
        self.ceiling = max(self.ceiling, self.floor)
        self.current = self.current or self.floor

    @classmethod
    def from_settings(cls, memory_limit: str, max_memory_limit: str | None) -> MemoryGovernor:
        """From the warehouse resource's `duckdb_memory_limit` and `duckdb_max_memory_limit`."""
        sizes = {"duckdb_memory_limit": memory_limit, "duckdb_max_memory_limit": max_memory_limit}
        parsed: dict[str, int] = {}
        for name, text in sizes.items():
            try:
                parsed[name] = parse_size(text) if text else default_ceiling()
            except ValueError as error:
                raise CrmConfigError(f"{name}: {error}") from None
        return cls(parsed["duckdb_memory_limit"], parsed["duckdb_max_memory_limit"])

    def grow(self, failed_at: int) -> int | None:
        """The next limit after a statement ran out of memory at `failed_at`, now `current`;
        None at the ceiling. Another client may have raised it meanwhile: then that stands (dlt
        runs this destination's jobs one at a time, so that is a query outside the load)."""
        if self.current > failed_at:
            return self.current
        higher = [s for s in limit_steps(self.floor, self.ceiling) if s > failed_at]
        if not higher:
            return None
        self.current = higher[0]
        return self.current


@configspec(init=False)
class GovernedDuckDbConfiguration(DuckDbClientConfiguration):
    """dlt's DuckDB configuration with the sync's memory governor (not from config providers)."""

    memory_governor: Annotated[MemoryGovernor | None, NotResolved()] = None

    def __init__(
        self,
        *,
        credentials: Any = None,
        create_indexes: bool = False,
        destination_name: str | None = None,
        environment: str | None = None,
        memory_governor: MemoryGovernor | None = None,
    ) -> None:
        super().__init__(
            credentials=credentials,
            create_indexes=create_indexes,
            destination_name=destination_name,  # type: ignore[arg-type]
            environment=environment,  # type: ignore[arg-type]
        )
        self.memory_governor = memory_governor


def is_out_of_memory(error: BaseException) -> bool:
    """DuckDB's out-of-memory error, or another that it caused (a commit that could not pin a
    block fails as a TransactionException)."""
    if isinstance(error, duckdb_lib.OutOfMemoryException):
        return True
    return isinstance(error, duckdb_lib.Error) and any(m in str(error) for m in _OUT_OF_MEMORY)


class GovernedDuckDbSqlClient(DuckDbSqlClient):
    """dlt's DuckDB SQL client that applies the governor's memory_limit to the connection it
    borrows, and raises it when a statement runs out of memory."""

    def __init__(
        self,
        dataset_name: str,
        staging_dataset_name: str,
        credentials: DuckDbBaseCredentials,
        capabilities: DestinationCapabilitiesContext,
        memory_governor: MemoryGovernor | None = None,
    ) -> None:
        super().__init__(dataset_name, staging_dataset_name, credentials, capabilities)
        self.memory_governor = memory_governor
        self._applied = 0  # the limit last set on the connection this client borrowed

    def open_connection(self) -> duckdb_lib.DuckDBPyConnection:
        connection = super().open_connection()
        self._applied = 0
        if self.memory_governor is not None:
            self._apply(self.memory_governor.current)
        return connection

    def _apply(self, limit: int) -> None:
        if limit != self._applied:
            # GLOBAL: the connection dlt borrowed is a clone of the sync's connection
            self._conn.execute(f"SET GLOBAL memory_limit = '{limit}B'")
            self._applied = limit

    @contextmanager
    def execute_query(self, query: Any, *args: Any, **kwargs: Any) -> Iterator[DBApiCursor]:
        try:
            with super().execute_query(query, *args, **kwargs) as cursor:
                yield cursor
        except DatabaseTransientException as error:
            self._if_out_of_memory(error)
            raise

    def commit_transaction(self) -> None:
        # DuckDB writes a transaction's data out on commit, which may run out of memory too
        try:
            super().commit_transaction()
        except DatabaseTransientException as error:
            self._if_out_of_memory(error)
            raise

    def _if_out_of_memory(self, error: DatabaseTransientException) -> None:
        if self.memory_governor is not None and is_out_of_memory(error.__cause__ or error):
            self._out_of_memory(error)

    def _out_of_memory(self, error: DatabaseTransientException) -> None:
        governor = self.memory_governor
        assert governor is not None
        failed_at = self._applied or governor.current
        raised = governor.grow(failed_at)
        if raised is None:
            raise DestinationTerminalException(
                f"DuckDB ran out of memory at memory_limit {format_size(failed_at)}, the most a"
                " load may use (duckdb_max_memory_limit; by default half the machine's memory)."
                " Raise duckdb_max_memory_limit, give the machine more memory or lower"
                f" duckdb_threads. DuckDB said: {str(error).splitlines()[0]}"
            ) from error
        with suppress(duckdb_lib.Error):  # dlt's retry borrows a fresh clone, which applies it
            self._apply(raised)
        logger.warning(
            f"DuckDB ran out of memory at memory_limit {format_size(failed_at)}; raised it to"
            f" {format_size(raised)} (ceiling {format_size(governor.ceiling)}) for dlt's retry"
            " of the job"
        )


class GovernedDuckDbClient(DuckDbClient):
    """dlt's DuckDB job client on a `GovernedDuckDbSqlClient`."""

    def __init__(
        self,
        schema: Schema,
        config: GovernedDuckDbConfiguration,
        capabilities: DestinationCapabilitiesContext,
    ) -> None:
        super().__init__(schema, config, capabilities)
        self.sql_client = GovernedDuckDbSqlClient(
            self.sql_client.dataset_name,
            self.sql_client.staging_dataset_name,
            config.credentials,
            capabilities,
            config.memory_governor,
        )


class duckdb(ResolvedOnceFactory, duckdb_factory):  # noqa: N801 - dlt names its factories so
    """dlt's DuckDB destination whose loads raise memory_limit when they run out of memory.

    Takes dlt's DuckDB arguments plus `memory_governor`.
    """

    spec = GovernedDuckDbConfiguration

    @property
    def client_class(self) -> type[GovernedDuckDbClient]:
        return GovernedDuckDbClient
