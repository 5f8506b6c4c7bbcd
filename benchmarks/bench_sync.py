"""`make bench`: how fast the sandbox answers and how fast / how lean a full sync is.

Each sync runs in its own process so its peak RSS is its own. Not a test: numbers, no asserts.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from crm_sandbox import CrmStore, SandboxServer

KEY = "bench-key"


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


def one_sync(records: int, loader_file_format: str) -> dict[str, float]:
    """Runs in a child process: a full sync of all four resources into a fresh DuckDB file."""
    import dagster as dg
    from dagster_dlt import DagsterDltResource

    from crm_assets import assets
    from crm_assets.defs.crm.resources import CrmApiResource
    from crm_assets.warehouse.resource import WarehouseResource

    with tempfile.TemporaryDirectory() as tmp, SandboxServer(CrmStore(records), api_key=KEY) as s:
        started = time.perf_counter()
        result = dg.materialize(
            [assets.build_crm_assets()],
            resources={
                "dlt": DagsterDltResource(),
                "crm_api": CrmApiResource(base_url=s.base_url, api_key=KEY),
                "warehouse": WarehouseResource(
                    duckdb_path=f"{tmp}/wh.duckdb", loader_file_format=loader_file_format
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
    parser.add_argument("--child", nargs=2, metavar=("RECORDS", "FORMAT"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_sync(int(args.child[0]), args.child[1])))
        return
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"sandbox page latency (100 records): {page_latency(500)}")
    for fmt in ("parquet", "insert_values"):
        child = [sys.executable, str(Path(__file__)), "--child", str(args.records), fmt]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        print(f"full sync, {fmt}: {done.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
