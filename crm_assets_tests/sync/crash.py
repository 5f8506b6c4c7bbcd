"""The crash test's and `make soak`'s side of a crash: run the job in a child, then compare.

`differences` says, per table, what differs between the warehouse and the API's snapshot after
a run: live rows against the records, deletion marks against what is gone, the last load's
quarantine, load packages left behind. An empty list means exact.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import subprocess
import tempfile
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import dlt
from dlt.destinations.sql_client import SqlClientBase

from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import declared_columns
from crm_assets.warehouse.resource import PIPELINE_NAME, WarehouseResource
from crm_assets.warehouse.tables import history_problems
from crm_assets_tests.sync.crash_child import HISTORY
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records
from crm_sandbox import SandboxServer

CHILD = "crm_assets_tests.sync.crash_child"
# What `dg.materialize` imports on its first call (its ephemeral instance's parts)
_RUN_IMPORTS = (
    "dagster._core.launcher.sync_in_memory_run_launcher",
    "dagster._core.run_coordinator",
    "dagster._core.storage.event_log",
    "dagster._core.storage.noop_compute_log_manager",
    "dagster._core.storage.runs",
    "dagster._core.definitions.run_config",
)


@functools.cache
def _forkserver() -> ForkServerContext:
    """Forks each child from one server process that imported the job's code once: a fresh
    interpreter spends ~4 s of CPU importing Dagster and dlt before the job even starts. The
    storage of a run's in-memory instance too: Dagster imports it only when the run starts."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([CHILD, *_RUN_IMPORTS])
    return context


def run_job(
    sandbox: SandboxServer, warehouse: WarehouseResource, phase: str = "none", seed: int = 0
) -> subprocess.CompletedProcess[str]:
    """The sync job in its own process (see crash_child.py), killed in `phase` unless `none`;
    its exit code is -9 when killed."""
    from crm_assets_tests.sync.crash_child import run_forked

    argv = [sandbox.base_url, str(warehouse.path), phase, str(seed)]
    if warehouse.destination == "postgres":
        argv += [str(warehouse.postgres_url), warehouse.dataset_name]
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        debug_logs = bool(os.environ.get("CRM_TEST_CHILD_DEBUG_LOGS"))
        child = _forkserver().Process(target=run_forked, args=(argv, out, err, debug_logs))
        child.start()
        child.join(timeout=600)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired([CHILD, *argv[:4]], 600)
        return subprocess.CompletedProcess(
            [CHILD, *argv[:4]], child.exitcode, out.read_text(), err.read_text()
        )


# A record whose `amount` fits no decimal: its row lands with NULL there, the value goes to
# `_quarantine` in every sync (so every load writes quarantine rows), and it reconciles.
UNFIT_RECORD = {"id": 900_001, "name": "an amount that is no number", "amount": "n/a"}
SET_ASIDE = ("opportunity", "900001", "amount")


def _table_differences(
    sandbox: SandboxServer,
    warehouse: WarehouseResource,
    client: SqlClientBase,
    table: str,
    quarantined: list[tuple[Any, ...]],
) -> list[str]:
    """`table` against the API's records, each value set aside (`quarantined`) expected NULL."""
    nulls: dict[str, list[str]] = {}
    for resource, record_id, field in quarantined:
        if resource == table and field is not None:
            nulls.setdefault(record_id, []).append(field)
    upstream = sorted(  # in id order, as the warehouse's rows are read
        (
            {**r, **dict.fromkeys(nulls.get(str(r["id"]), []))}
            for r in sandbox.store.records(table)
            if "id" in r
        ),
        key=lambda r: r["id"],
    )
    upstream_ids = {r["id"] for r in upstream}
    qualified = client.make_qualified_table_name(table)
    rows = client.execute_sql(f"select id, _deleted_at from {qualified}")
    marked = {i for i, at in rows if at is not None}
    problems = []
    if len(rows) != len({i for i, _ in rows}):
        problems.append(f"{table}: duplicate ids")
    if wrong := {i for i, _ in rows} - upstream_ids - marked:
        problems.append(f"{table}: {len(wrong)} rows gone upstream but not marked deleted")
    if wrong := marked & upstream_ids:
        problems.append(f"{table}: {len(wrong)} live records marked deleted")
    live = [r for r in warehouse_records(warehouse, table, client) if r["id"] not in marked]
    try:
        assert_same_records(upstream, live)
    except AssertionError as difference:
        problems.append(f"{table}: live rows differ from the API ({difference})")
    return problems


def _history_differences(client: SqlClientBase, table: str) -> list[str]:
    """`<table>_history` against `table`: its invariants hold, and each live row's current
    version holds the row's values."""
    doubled, overlapping, unmatched = history_problems(client, table)
    current = client.make_qualified_table_name(table)
    versions = client.make_qualified_table_name(f"{table}_history")
    columns = [c.name for c in declared_columns(table) if c.name not in ("id", "_deleted_at")]
    differ = " or ".join(f"v.{c} is distinct from c.{c}" for c in columns)
    stale = client.execute_sql(
        f"select count(*) from {current} c join {versions} v on v.id = c.id"
        f" and v.valid_to is null where c._deleted_at is null and ({differ})"
    )[0][0]
    counts = {
        "ids with two current versions": doubled,
        "overlapping versions": overlapping,
        "live rows without one current version": unmatched,
        "current versions that differ from the live row": stale,
    }
    return [f"{table}_history: {n} {what}" for what, n in counts.items() if n]


def differences(
    sandbox: SandboxServer, warehouse: WarehouseResource, quarantined: list[tuple[Any, ...]]
) -> list[str]:
    """What differs from the API's snapshot; `quarantined` the last load's quarantine rows."""
    with warehouse.sql_client() as client:  # one opening for all of it
        problems = [
            p
            for t in crm_resource_names()
            for p in _table_differences(sandbox, warehouse, client, t, quarantined)
        ]
        problems += [p for t in HISTORY for p in _history_differences(client, t)]
        loads = client.make_qualified_table_name("_dlt_loads")
        quarantine = client.make_qualified_table_name("_quarantine")
        last_load = client.execute_sql(f"select max(load_id) from {loads}")[0][0]
        found = client.execute_sql(
            f"select resource, record_id, field from {quarantine} where _dlt_load_id = %s",
            last_load,
        )
        orphans = client.execute_sql(
            f"select count(*) from {quarantine} where _dlt_load_id not in"
            f" (select load_id from {loads} where status = 0)"
        )[0][0]
    found = [tuple(row) for row in found]
    if orphans:
        problems.append(f"{orphans} quarantine rows of loads that never completed")
    if sorted(found, key=repr) != sorted(quarantined, key=repr):
        problems.append(f"quarantine of the last load: {found} instead of {quarantined}")
    pipeline = dlt.attach(PIPELINE_NAME, pipelines_dir=str(warehouse.path.parent / "dlt_pipelines"))
    if (
        pending := pipeline.list_extracted_load_packages()
        + pipeline.list_normalized_load_packages()
    ):
        problems.append(f"{len(pending)} load packages left behind")
    return problems
