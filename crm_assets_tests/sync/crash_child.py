"""A sync job in its own process that `kill -9`s itself at a chosen point of a chosen phase.

`python -m crm_assets_tests.sync.crash_child BASE_URL DUCKDB_PATH PHASE SEED [PG_URL DATASET]`
runs (into DuckDB, or that PostgreSQL dataset, dlt's state beside DUCKDB_PATH) what
`crm_sync_job` runs (the sync, the table checks, the model) against the API at BASE_URL; PHASE
is one of `PHASES` or `none`, and SEED picks the point within it. The crash test and `make soak`
run it (forked by `crash.run_job` from a process that imported it once), then check that one
normal run repairs everything. With CRM_TEST_CHILD_DEBUG_LOGS set, every
logger writes at DEBUG to stderr (urllib3's request lines too), for the soak's leak search.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
from dlt.pipeline.pipeline import Pipeline

import crm_assets.defs.analytics.assets as analytics
import crm_assets.defs.crm.assets as sync_assets
import crm_assets.defs.crm.checks as checks
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY

# quarantine_appended: right after the load appended the `_quarantine` rows, before the tables
# were merged (dlt commits each table of a package on its own)
PHASES = ("extract", "normalize", "load", "quarantine_appended", "post_load", "checks", "model")
# the resources in history mode during a crash: their history must come out exact too
HISTORY = ("opportunity",)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after_calls(owner: Any, name: str, calls: int, before: bool = True) -> None:
    """Dies on the `calls`-th call of `owner.name`, before or after it runs."""
    original = getattr(owner, name)
    count = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count == calls and before:
            _die()
        result = original(*args, **kwargs)
        if count == calls:
            _die()
        return result

    setattr(owner, name, wrapper)


def _during_load(statement: int, after: str | None = None) -> None:
    """Dies before the `statement`-th SQL statement dlt runs while loading, or before the one
    following the first that mentions `after` (so that one's transaction has committed)."""
    loading, count, seen = [False], [0], [False]
    load = Pipeline.load

    def load_then(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        loading[0] = True
        return load(self, *args, **kwargs)

    def counting(execute: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.contextmanager
        def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            if loading[0]:
                count[0] += 1
                if count[0] == statement or seen[0]:
                    _die()
                seen[0] = after is not None and after in str(query)
            with execute(self, query, *args, **kwargs) as cursor:
                yield cursor

        return counted

    Pipeline.load = load_then  # type: ignore[method-assign]
    for client in (DuckDbSqlClient, Psycopg2SqlClient):  # the run uses one of them
        client.execute_query = counting(client.execute_query)  # type: ignore[method-assign]


def arm(phase: str, seed: int) -> str:
    """Installs the kill for `phase`; returns where it will strike, for the test's message."""
    rng = random.Random(f"{phase}/{seed}")
    before = rng.random() < 0.5
    where = "before" if before else "after"
    arms: dict[str, Callable[[], str]] = {
        "extract": lambda: _arm_extract(rng.randint(1, 12)),
        "normalize": lambda: _arm(Pipeline, "normalize", 1, before),
        "load": lambda: _arm_load(rng.randint(1, 24)),
        "quarantine_appended": lambda: _arm_load(0, after='"_quarantine"'),
        "post_load": lambda: _arm(sync_assets, "mark_deleted", rng.randint(1, 3), before),
        "checks": lambda: _arm(checks, "id_counts", 1, before),
        "model": lambda: _arm(analytics, "build_account_summary", 1, before),
        "none": lambda: "nowhere",
    }
    return arms[phase]().replace("{where}", where)


def _arm(owner: Any, name: str, calls: int, before: bool) -> str:
    _after_calls(owner, name, calls, before)
    return f"{{where}} call {calls} of {name}"


def _arm_extract(page: int) -> str:
    _after_calls(CrmOffsetPaginator, "update_state", page, before=False)
    return f"after page {page} of extract"


def _arm_load(statement: int, after: str | None = None) -> str:
    _during_load(statement, after)
    if after:
        return f"after the load committed its SQL statement on {after}"
    return f"before SQL statement {statement} of the load"


def job_definitions() -> list[Any]:
    """What `crm_sync_job` runs with `HISTORY` on: the sync, the table checks, the model."""
    return [
        sync_assets.build_crm_assets(history=HISTORY),
        checks.build_table_checks(crm_resource_names(), HISTORY),
        analytics.build_account_summary_asset(),
    ]


def run_job(base_url: str, duckdb_path: str, postgres: Sequence[str] = ()) -> bool:
    """`job_definitions`, in process, into DuckDB or, with `postgres` (URL, dataset), there."""
    if postgres:
        url, dataset = postgres
        warehouse = WarehouseResource(
            destination="postgres", postgres_url=url, duckdb_path=duckdb_path, dataset_name=dataset
        )
    else:
        warehouse = WarehouseResource(duckdb_path=duckdb_path)
    result = dg.materialize(
        job_definitions(),
        resources={
            "dlt": DagsterDltResource(),
            "crm_api": CrmApiResource(base_url=base_url, api_key=TEST_KEY, backoff_factor=0.05),
            "warehouse": warehouse,
        },
        raise_on_error=False,
    )
    return result.success


def main(argv: list[str], debug_logs: bool = False) -> int:
    base_url, duckdb_path, phase, seed, *postgres = argv
    if debug_logs:  # the soak looks for the key in all of it
        logging.basicConfig(level=logging.DEBUG)
    print(f"kill -9 {arm(phase, int(seed))}", flush=True)
    return 0 if run_job(base_url, duckdb_path, postgres) else 1


def run_forked(argv: list[str], stdout: Path, stderr: Path, debug_logs: bool) -> None:
    """`main` in a process forked by `crash.run_job`, its output written to the two files."""
    with stdout.open("w") as out, stderr.open("w") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = main(argv, debug_logs)
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], bool(os.environ.get("CRM_TEST_CHILD_DEBUG_LOGS"))))
