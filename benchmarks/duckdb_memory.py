"""Big records into DuckDB, without Dagster: the merge that ran out of memory at ~200k records.

Loads `--rows` account-like records of 2-4 kB (some of 20-60 kB) through
`WarehouseResource.open_pipeline()` twice (the second run merges into the existing table),
as pyarrow tables of 5,000 rows like the sync does (or as dicts, `--dicts`). Prints seconds,
peak RSS and the memory_limit DuckDB ended with. Numbers, not a test.

    .venv/bin/python benchmarks/duckdb_memory.py --rows 200000
    .venv/bin/python benchmarks/duckdb_memory.py --rows 45000 --memory-limit 40MB
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

BATCH_ROWS = 5_000
_WORDS = ["Ünïcødé", "Straße", "東京", "café", "naïve", "Ωmega", "crm", "account", "deal"]


def _text(rng: random.Random, size: int) -> str:
    chunk = " ".join(rng.choice(_WORDS) for _ in range(64)) + " "
    filler = "".join(rng.choices(string.ascii_letters + " ", k=256))
    body = (chunk + filler) * (size // (len(chunk) + len(filler)) + 1)
    return body[:size]


def record(i: int, rng: random.Random) -> dict[str, Any]:
    """An account of 2-4 kB: 1% carry a 20-60 kB note, 5% a nested `extra` object."""
    notes = _text(
        rng, rng.randint(1_500, 3_500) if rng.random() > 0.01 else rng.randint(20_000, 60_000)
    )
    created = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))
    row: dict[str, Any] = {
        "id": i * 7 + i % 5,  # sparse, the same records in every run
        "name": f"{rng.choice(_WORDS)} {i} GmbH & Co. KG",
        "industry": rng.choice(["software", "retail", None]),
        "status": rng.choice(["active", "prospect", None]),
        "annual_revenue": Decimal(rng.randint(0, 10**9)) / 100,
        "score": rng.random(),
        "is_partner": rng.random() > 0.5,
        "created_at": created,
        "updated_at": created + timedelta(days=rng.randint(0, 900)),
        "address": {"street": f"{i} Main St", "city": rng.choice(_WORDS), "country": "DE"},
        "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 5))],
        "notes": notes,
    }
    if rng.random() < 0.05:
        row["extra"] = {"source": "import", "raw": {"k": i, "v": _text(rng, 200)}}
    return row


def _arrow(rows: list[dict[str, Any]]) -> pa.Table:
    """As the sync's batcher makes them: nested values as JSON text, decimals as decimal128."""
    flat = []
    for row in rows:
        row = dict(row)
        address = row.pop("address")
        row.update({f"address__{k}": v for k, v in address.items()})
        row["tags"] = json.dumps(row["tags"], ensure_ascii=False)
        row["extra"] = json.dumps(row["extra"], ensure_ascii=False) if "extra" in row else None
        flat.append(row)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("industry", pa.string()),
            ("status", pa.string()),
            ("annual_revenue", pa.decimal128(38, 9)),
            ("score", pa.float64()),
            ("is_partner", pa.bool_()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("updated_at", pa.timestamp("us", tz="UTC")),
            ("address__street", pa.string()),
            ("address__city", pa.string()),
            ("address__country", pa.string()),
            ("tags", pa.string()),
            ("notes", pa.string()),
            ("extra", pa.string()),
        ]
    )
    return pa.Table.from_pylist(flat, schema=schema)


def batches(rows: int, seed: int, as_dicts: bool) -> Iterator[Any]:
    rng = random.Random(seed)
    for start in range(0, rows, BATCH_ROWS):
        chunk = [record(i, rng) for i in range(start, min(start + BATCH_ROWS, rows))]
        if as_dicts:
            yield from chunk
        else:
            yield _arrow(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=45_000)
    parser.add_argument("--runs", type=int, default=2, help="loads in a row (2nd+ merge)")
    parser.add_argument("--memory-limit", help="WarehouseResource.duckdb_memory_limit")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--dicts", action="store_true", help="dicts instead of arrow tables")
    parser.add_argument("--workdir", help="default: a temporary directory")
    args = parser.parse_args()

    from crm_assets.warehouse.resource import WarehouseResource

    settings: dict[str, Any] = {}
    if args.memory_limit:
        settings["duckdb_memory_limit"] = args.memory_limit
    if args.threads:
        settings["duckdb_threads"] = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        warehouse = WarehouseResource(duckdb_path=str(workdir / "warehouse.duckdb"), **settings)
        started = time.perf_counter()
        for run in range(args.runs):
            run_started = time.perf_counter()
            with warehouse.open_pipeline() as pipeline:
                info = pipeline.run(
                    batches(args.rows, seed=run, as_dicts=args.dicts),
                    table_name="account",
                    write_disposition="merge",
                    primary_key="id",
                    loader_file_format="parquet",
                )
                info.raise_on_failed_jobs()
                with pipeline.sql_client() as client:
                    limit = client.execute_sql("SELECT current_setting('memory_limit')")[0][0]
                    count = client.execute_sql("SELECT count(*) FROM account")[0][0]
            print(
                f"run {run + 1}: {time.perf_counter() - run_started:.1f} s, {count} rows,"
                f" memory_limit {limit}",
                flush=True,
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"total {time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB")
    sys.exit(0)


if __name__ == "__main__":
    main()
