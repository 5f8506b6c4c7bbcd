"""`make bench`: how fast the sandbox answers and how fast / how lean a full sync is.

Each sync runs in its own process so its peak RSS is its own. Not a test: numbers, no asserts.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from crm_sandbox import CrmStore, SandboxServer

KEY = "bench-key"
# (loader file format, record gate or not, sandbox dialect, destination) of each full sync
SYNCS = (
    ("parquet", "no-gate", "default", "duckdb"),
    ("parquet", "gate", "default", "duckdb"),
    ("parquet", "gate", "foreign", "duckdb"),
    ("insert_values", "gate", "default", "duckdb"),
)
# Postgres's loader formats, measured when --postgres-url (or CRM_TEST_POSTGRES_URL) is given
POSTGRES_SYNCS = (
    ("csv", "gate", "default", "postgres"),
    ("insert_values", "gate", "default", "postgres"),
)


def page_latency(pages: int) -> dict[str, float]:
    """Milliseconds per 100-record page over one keep-alive session."""
    with SandboxServer(CrmStore(2000), api_key=KEY) as sandbox, requests.Session() as session:
        url = f"{sandbox.base_url}/v1/account"
        timings = []
        for page in range(pages):
            started = time.perf_counter()
            session.get(url, params={"api_key": KEY, "offset": (page % 20) * 100, "limit": 100})
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"p50_ms": statistics.median(timings), "p95_ms": timings[int(len(timings) * 0.95)]}


class _NoGate:
    """Stands in for the record gate, to measure what the gate costs: records go to dlt as the
    API sent them (as dicts: only gated rows become arrow batches)."""

    def __init__(self, resource: str, ledger: object, *args: object, **kwargs: object) -> None:
        from crm_assets.source.schema import declared_columns

        self.ledger, self.columns = ledger, declared_columns(resource)

    def __call__(self, record: dict) -> dict:
        return record


def one_sync(
    records: int, loader_file_format: str, gate: bool, dialect: str, postgres_url: str | None
) -> dict[str, float]:
    """Runs in a child process: a full sync of all four resources into a fresh DuckDB file, or
    into a fresh schema on Postgres when `postgres_url` is given."""
    import dagster as dg
    from dagster_dlt import DagsterDltResource

    from crm_assets.defs.crm.assets import build_crm_assets
    from crm_assets.defs.crm.resources import CrmApiResource
    from crm_assets.source import contract
    from crm_assets.warehouse.resource import WarehouseResource

    if not gate:
        contract.RecordGate = _NoGate  # type: ignore[assignment,misc]
    store = CrmStore(records, dialect=dialect)
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(store, api_key=KEY) as s:
        started = time.perf_counter()
        result = dg.materialize(
            [build_crm_assets()],
            resources={
                "dlt": DagsterDltResource(),
                "crm_api": CrmApiResource(base_url=s.base_url, api_key=KEY),
                "warehouse": WarehouseResource(
                    destination="postgres" if postgres_url else "duckdb",
                    postgres_url=postgres_url,
                    dataset_name=f"bench_{uuid.uuid4().hex[:10]}",
                    duckdb_path=f"{tmp}/wh.duckdb",
                    loader_file_format=loader_file_format,
                ),
            },
        )
        seconds = time.perf_counter() - started
    assert result.success
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"records": records * 4, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=12500, help="per resource (x4 in all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per sync; the median counts")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CRM_TEST_POSTGRES_URL"),
        help="also measure Postgres's loader formats there (each run in a schema of its own)",
    )
    parser.add_argument("--child", nargs=5, metavar=("RECORDS", "FORMAT", "GATE", "DIALECT", "TO"))
    args = parser.parse_args()
    if args.child:
        records, fmt, gate, dialect, to = args.child
        url = args.postgres_url if to == "postgres" else None
        print(json.dumps(one_sync(int(records), fmt, gate == "gate", dialect, url)))
        return
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"sandbox page latency (100 records): {page_latency(500)}")
    runs: dict[str, dict[str, float]] = {}
    syncs = SYNCS + (POSTGRES_SYNCS if args.postgres_url else ())
    if not args.postgres_url:
        print("Postgres loader formats: not measured (no --postgres-url / CRM_TEST_POSTGRES_URL)")
    for fmt, gate, dialect, to in syncs:
        label = f"{fmt}, {gate}, {dialect} dialect" + (", postgres" if to == "postgres" else "")
        child = [sys.executable, str(Path(__file__)), "--child", str(args.records)]
        if to == "postgres":
            child[2:2] = ["--postgres-url", args.postgres_url]
        measured = []
        for _ in range(args.repeat):  # the median of a few runs: one run on 2 cores is noisy
            done = subprocess.run(
                [*child, fmt, gate, dialect, to], capture_output=True, text=True, check=True
            )
            measured.append(json.loads(done.stdout.strip().splitlines()[-1]))
        runs[label] = sorted(measured, key=lambda run: run["seconds"])[len(measured) // 2]
        seconds = ", ".join(f"{run['seconds']}" for run in measured)
        print(f"full sync, {label}: {runs[label]} (runs: {seconds} s)")
    with_gate = runs["parquet, gate, default dialect"]["seconds"]
    without = runs["parquet, no-gate, default dialect"]["seconds"]
    cost = with_gate / without - 1
    verdict = "met" if cost <= 0.10 else "NOT met"
    print(f"record gate cost: {cost:+.0%} of a sync without it (target <= +10%: {verdict})")


if __name__ == "__main__":
    main()
