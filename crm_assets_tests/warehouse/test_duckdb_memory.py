"""DuckDB's memory_limit for loads: a floor, raised when a load job runs out of memory.

The loads here go through `WarehouseResource.open_pipeline` into a real DuckDB file, with a floor
low enough that wide records run out of memory in dlt's merge (the dedup window buffers whole
rows): they load all the same, at a higher limit, in the same `pipeline.run`.
"""

import itertools
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.duckdb_memory import (
    MemoryGovernor,
    default_ceiling,
    format_size,
    is_out_of_memory,
    limit_steps,
    machine_memory,
    parse_size,
)
from crm_assets.warehouse.resource import WarehouseResource

MB = 1000**2
GB = 1000**3


def wide_batches(rows: int, text_bytes: int, batch_rows: int = 200) -> Iterator[pa.Table]:
    """Account-like rows whose `notes` is `text_bytes` long, in arrow batches as the sync's."""
    for start in range(0, rows, batch_rows):
        ids = range(start, min(rows, start + batch_rows))
        yield pa.table(
            {
                "id": pa.array([i * 7 for i in ids], pa.int64()),
                "name": [f"Ünïcødé {i}" for i in ids],
                "status": [None if i % 3 else "active" for i in ids],
                "notes": [secrets.token_hex(text_bytes // 2) for _ in ids],
            }
        )


def load(pipeline: dlt.Pipeline, rows: int, text_bytes: int) -> dict[str, int]:
    """Loads the rows; says how often dlt retried each kind of job of the table ("sql": the
    merge, "parquet": the copy into the staging table)."""
    info = pipeline.run(
        wide_batches(rows, text_bytes),
        table_name="account",
        write_disposition="merge",
        primary_key="id",
        loader_file_format="parquet",
    )
    info.raise_on_failed_jobs()
    jobs = [job.job_file_info for job in info.load_packages[0].jobs["completed_jobs"]]
    return {job.file_format: job.retry_count for job in jobs if job.table_name == "account"}


def memory_limit(pipeline: dlt.Pipeline) -> int:
    with pipeline.sql_client() as client:
        return parse_size(client.execute_sql("SELECT current_setting('memory_limit')")[0][0])


# --- a load that runs out of memory ------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "row_group", "retries"),
    [
        # dlt's merge runs out: its dedup window buffers 2,048 whole rows (the reported case)
        ("24MB", 200, {"parquet": 0, "sql": 1}),
        # first the copy of the parquet file into the staging table (a row group of 2,000 wide
        # rows), then the merge
        ("16MB", None, {"parquet": 1, "sql": 1}),
    ],
)
def test_a_load_that_runs_out_of_memory_is_retried_with_more_and_lands(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    floor: str,
    row_group: int | None,
    retries: dict[str, int],
) -> None:
    if row_group:
        monkeypatch.setenv("DATA_WRITER__BUFFER_MAX_ITEMS", str(row_group))
    # 2,000 rows of 10 kB need ~70 MB; with a ceiling of 1 GB the steps are x4.
    warehouse = WarehouseResource(
        duckdb_path=str(tmp_path / "warehouse.duckdb"),
        duckdb_memory_limit=floor,
        duckdb_max_memory_limit="1GB",
    )
    with caplog.at_level(logging.WARNING), warehouse.open_pipeline() as pipeline:
        assert memory_limit(pipeline) == pytest.approx(parse_size(floor), rel=0.01)
        assert load(pipeline, rows=2_000, text_bytes=10_000) == retries
        raised = memory_limit(pipeline)
        # the merge into the table it made starts where the first load ended: no retry
        assert load(pipeline, rows=2_000, text_bytes=10_000) == {"parquet": 0, "sql": 0}
        assert memory_limit(pipeline) == raised
        with pipeline.sql_client() as client:
            assert client.execute_sql("SELECT count(*) FROM account")[0][0] == 2_000
    steps = limit_steps(parse_size(floor), 1 * GB)
    assert steps[:3] == [parse_size(floor) * 4**n for n in range(3)]
    failures = sum(retries.values())
    assert raised == pytest.approx(steps[failures], rel=0.01)
    grew = [r.getMessage() for r in caplog.records if "ran out of memory" in r.getMessage()]
    assert grew == [
        f"DuckDB ran out of memory at memory_limit {format_size(low)}; raised it to"
        f" {format_size(high)} (ceiling 1.0GB) for dlt's retry of the job"
        for low, high in itertools.pairwise(steps[: failures + 1])
    ]


def test_a_load_that_runs_out_of_memory_at_the_ceiling_fails_at_once_saying_what_to_change(
    tmp_path: Path,
) -> None:
    warehouse = WarehouseResource(
        duckdb_path=str(tmp_path / "warehouse.duckdb"),
        duckdb_memory_limit="16MB",
        duckdb_max_memory_limit="16MB",
    )
    with warehouse.open_pipeline() as pipeline, pytest.raises(PipelineStepFailed) as failed:
        load(pipeline, rows=2_000, text_bytes=10_000)
    message = str(failed.value)
    assert "ran out of memory at memory_limit 16.0MB, the most a load may use" in message
    assert "duckdb_max_memory_limit" in message
    # a terminal failure: dlt did not retry it 5 times at the same limit
    assert "LoadClientJobRetry" not in message


def test_the_floor_holds_a_sync_that_needs_no_more(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "warehouse.duckdb"))
    with warehouse.open_pipeline() as pipeline:
        load(pipeline, rows=500, text_bytes=500)
        assert memory_limit(pipeline) == pytest.approx(parse_size("40MB"), rel=0.01)
        # still dlt's duckdb destination, to the pipeline's state and Dagster's metadata
        assert pipeline.destination.destination_type == "dlt.destinations.duckdb"
        assert pipeline.destination.destination_name == "duckdb"


# --- the limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("40MB", 40 * MB),
        ("1.5GB", 1_500 * MB),
        ("512 MiB", 512 * 1024**2),
        ("38.1 MiB", int(38.1 * 1024**2)),  # as DuckDB's current_setting says it
        ("0 bytes", 0),
        ("123B", 123),
        ("2TiB", 2 * 1024**4),
    ],
)
def test_memory_sizes_parse_as_duckdb_writes_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "40", "forty MB", "40 XB", "-1GB"])
def test_a_size_without_a_unit_or_number_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size(text)


def test_sizes_are_written_as_duckdb_reads_them() -> None:
    assert [format_size(s) for s in (40 * MB, 2_600 * MB, 999)] == ["40.0MB", "2.6GB", "999B"]
    assert parse_size(format_size(168_600_000)) == 168_600_000


def test_the_steps_reach_the_ceiling_by_dlts_last_attempt() -> None:
    steps = limit_steps(40 * MB, 12 * GB)
    assert len(steps) == 5  # dlt's 5 attempts of a job within a load
    assert (steps[0], steps[-1]) == (40 * MB, 12 * GB)
    assert all(b >= a * 4 for a, b in itertools.pairwise(steps[:-1]))
    # a small machine: at least x4 a step, the last one the ceiling
    assert limit_steps(40 * MB, 1 * GB) == [40 * MB, 160 * MB, 640 * MB, 1 * GB]
    assert limit_steps(40 * MB, 100 * MB) == [40 * MB, 100 * MB]
    assert limit_steps(40 * MB, 40 * MB) == [40 * MB]


def test_the_ceiling_is_half_the_machines_or_the_containers_memory(tmp_path: Path) -> None:
    assert default_ceiling(8 * GB) == 4 * GB
    ram = machine_memory(tmp_path / "no-cgroup")
    assert ram
    assert ram > 0
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("max\n")  # unlimited
    assert machine_memory(v2) == ram
    (v2 / "memory.max").write_text(f"{ram // 4}\n")
    assert machine_memory(v2) == ram // 4
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert machine_memory(v1) == ram
    (v1 / "memory" / "memory.limit_in_bytes").write_text("2147483648\n")
    assert machine_memory(v1) == min(ram, 2147483648)


def test_the_governor_grows_a_step_per_failure_and_stops_at_the_ceiling() -> None:
    governor = MemoryGovernor(floor=40 * MB, ceiling=1 * GB)
    assert governor.current == 40 * MB
    assert governor.grow(failed_at=40 * MB) == 160 * MB
    # a client that failed at the old limit after another raised it: the raised one stands
    assert governor.grow(failed_at=40 * MB) == 160 * MB
    assert governor.grow(failed_at=160 * MB) == 640 * MB
    assert governor.grow(failed_at=640 * MB) == 1 * GB
    assert governor.grow(failed_at=1 * GB) is None
    assert governor.current == 1 * GB


def test_the_settings_make_the_governor_and_a_ceiling_below_the_floor_is_the_floor(
    tmp_path: Path,
) -> None:
    governor = MemoryGovernor.from_settings("40MB", None)
    assert (governor.floor, governor.ceiling) == (40 * MB, max(40 * MB, default_ceiling()))
    assert MemoryGovernor.from_settings("2GB", "1GB").ceiling == 2 * GB
    with pytest.raises(CrmConfigError, match=r"^duckdb_memory_limit: not a memory size: 'lots'"):
        MemoryGovernor.from_settings("lots", None)
    with pytest.raises(CrmConfigError, match=r"^duckdb_max_memory_limit: not a memory size"):
        WarehouseResource(
            duckdb_path=str(tmp_path / "w.duckdb"), duckdb_max_memory_limit="8 gigs"
        ).dlt_pipeline()


def test_out_of_memory_is_told_by_duckdbs_words_whatever_the_exception_class() -> None:
    assert is_out_of_memory(duckdb.OutOfMemoryException("Out of Memory Error: failed to pin"))
    # what a commit that could not write its data out raises
    assert is_out_of_memory(
        duckdb.TransactionException(
            "TransactionContext Error: Failed to commit: failed to pin block of size 256.0 KiB"
            " (15.1 MiB/15.2 MiB used)"
        )
    )
    assert not is_out_of_memory(duckdb.ConstraintException("Duplicate key"))
    assert not is_out_of_memory(ValueError("Out of Memory Error"))  # not DuckDB's


def test_insert_values_statements_stay_small_as_duckdb_parses_them_outside_its_limit(
    tmp_path: Path,
) -> None:
    # 16 MiB statements (dlt's default for DuckDB) of `_quarantine` rows peaked at 2.4 GB RSS
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "warehouse.duckdb"))
    with warehouse.open_pipeline() as pipeline, pipeline.destination_client() as client:
        assert client.capabilities.max_query_length // 2 == 512 * 1024
