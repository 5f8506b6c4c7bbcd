"""SQL on the CRM tables after a load: which exist, deletion marks, row and id counts.

All of it goes through dlt's SQL client for the pipeline's destination, so it runs wherever dlt
loads (DuckDB here, Postgres and the cloud warehouses the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from dlt.destinations.job_client_impl import SqlJobClientBase
from dlt.destinations.sql_client import SqlClientBase

from crm_assets.source.history import VALID_FROM, VALID_TO, history_table
from crm_assets.source.schema import DELETED_AT, PRIMARY_KEY

DLT_LOAD_ID = "_dlt_load_id"


def existing_tables(client: SqlClientBase, tables: Iterable[str]) -> set[str]:
    """Which of `tables` exist in the client's dataset."""
    wanted = set(tables)
    rows = client.execute_sql(
        "select table_name from information_schema.tables where table_schema = %s",
        client.dataset_name,
    )
    return {row[0] for row in rows or []} & wanted


def landed_ids(client: SqlClientBase, table: str, load_id: str | None) -> int:
    """Distinct ids the load `load_id` wrote to `table`: dlt's merge rewrites every row it gets."""
    if load_id is None:
        return 0
    qualified = client.make_qualified_table_name(table)
    query = f"select count(distinct id) from {qualified} where {DLT_LOAD_ID} = %s"
    return int(client.execute_sql(query, load_id)[0][0])


def mark_deleted(client: SqlClientBase, table: str, load_id: str, at: datetime) -> tuple[int, int]:
    """Stamps `_deleted_at` on live rows the load `load_id` did not write: the API no longer
    returns them (call only after a full sync that reconciled).

    Returns (rows marked now, rows marked in all). A record that comes back is merged in again
    with `_deleted_at` NULL, as dlt replaces the whole row.
    """
    qualified = client.make_qualified_table_name(table)
    gone = f"{DELETED_AT} is null and {DLT_LOAD_ID} <> %s"
    with client.begin_transaction():
        newly = client.execute_sql(f"select count(*) from {qualified} where {gone}", load_id)
        client.execute_sql(f"update {qualified} set {DELETED_AT} = %s where {gone}", at, load_id)
    marked = client.execute_sql(f"select count(*) from {qualified} where {DELETED_AT} is not null")
    return int(newly[0][0]), int(marked[0][0])


def close_deleted_versions(client: SqlClientBase, table: str, at: datetime) -> int:
    """Closes, at `at`, the current version in `<table>_history` of every row marked deleted in
    `table` (history mode; call after `mark_deleted`). Returns how many were closed."""
    history = history_table(table)
    if not existing_tables(client, [history]):
        return 0
    versions = client.make_qualified_table_name(history)
    current = client.make_qualified_table_name(table)
    gone = (
        f"{VALID_TO} is null and {PRIMARY_KEY} in"
        f" (select {PRIMARY_KEY} from {current} where {DELETED_AT} is not null)"
    )
    with client.begin_transaction():
        count = client.execute_sql(f"select count(*) from {versions} where {gone}")
        client.execute_sql(f"update {versions} set {VALID_TO} = %s where {gone}", at)
    return int(count[0][0])


def version_counts(client: SqlClientBase, table: str) -> tuple[int, int]:
    """(versions, current versions) in `<table>_history`."""
    history = history_table(table)
    if not existing_tables(client, [history]):
        return 0, 0
    qualified = client.make_qualified_table_name(history)
    rows = client.execute_sql(f"select count(*), count(*) - count({VALID_TO}) from {qualified}")
    versions, current = rows[0]
    return int(versions), int(current)


def history_problems(client: SqlClientBase, table: str) -> tuple[int, int, int]:
    """What breaks `<table>_history`'s invariants: (ids with more than one current version,
    versions that overlap the id's previous one, live ids in `table` without exactly one
    current version)."""
    versions = client.make_qualified_table_name(history_table(table))
    current = client.make_qualified_table_name(table)
    key = PRIMARY_KEY
    doubled = (
        f"select count(*) from (select {key} from {versions} where {VALID_TO} is null"
        f" group by {key} having count(*) > 1) doubled"
    )
    overlapping = (
        f"select count(*) from (select {VALID_FROM} as since, lag({VALID_TO}) over"
        f" (partition by {key} order by {VALID_FROM}) as before_until, row_number() over"
        f" (partition by {key} order by {VALID_FROM}) as n from {versions}) ordered"
        " where n > 1 and (before_until is null or before_until > since)"
    )
    unmatched = (
        f"select count(*) from {current} c where c.{DELETED_AT} is null and (select count(*)"
        f" from {versions} v where v.{key} = c.{key} and v.{VALID_TO} is null) <> 1"
    )
    return tuple(int(client.execute_sql(q)[0][0]) for q in (doubled, overlapping, unmatched))  # type: ignore[return-value]


def drop_unfinished(client: SqlClientBase, table: str, resources: Sequence[str]) -> int:
    """Deletes rows an append-only `table` got for `resources` from loads that never completed
    (not in `_dlt_loads`): dlt commits each table of a package on its own, so a run killed
    mid-load can leave some. The run that calls this re-read those resources; another
    resource's rows may belong to a load still under way. Returns how many."""
    if not existing_tables(client, [table]) or not resources:
        return 0
    qualified = client.make_qualified_table_name(table)
    loads = client.make_qualified_table_name("_dlt_loads")
    unfinished = (
        f"{DLT_LOAD_ID} not in (select load_id from {loads} where status = 0)"
        f" and resource in ({', '.join(['%s'] * len(resources))})"
    )
    with client.begin_transaction():
        count = client.execute_sql(
            f"select count(*) from {qualified} where {unfinished}", *resources
        )
        client.execute_sql(f"delete from {qualified} where {unfinished}", *resources)
    return int(count[0][0])


def drop_load_rows(client: SqlClientBase, table: str, resource: str, load_id: str) -> None:
    """Deletes what the load `load_id` appended to `table` for `resource`: a read about to be
    repeated, whose rows the repeat writes again."""
    if table in existing_tables(client, [table]):
        client.execute_sql(
            f"delete from {client.make_qualified_table_name(table)}"
            f" where resource = %s and {DLT_LOAD_ID} = %s",
            resource,
            load_id,
        )


def row_counts(client: SqlClientBase, table: str) -> tuple[int, int]:
    """(all rows, rows not marked deleted) of a table."""
    qualified = client.make_qualified_table_name(table)
    query = f"select count(*), count(*) - count({DELETED_AT}) from {qualified}"
    rows, live = client.execute_sql(query)[0]
    return rows, live


def id_counts(client: SqlClientBase, table: str) -> tuple[int, int, int]:
    """(rows, rows with an id, distinct ids) of a table."""
    qualified = client.make_qualified_table_name(table)
    query = f"select count(*), count(id), count(distinct id) from {qualified}"
    rows, with_id, distinct = client.execute_sql(query)[0]
    return rows, with_id, distinct


def has_column(client: SqlClientBase, table: str, column: str) -> bool:
    """Whether `table` exists in the client's dataset with `column`.

    Asked of the catalog, not learnt from a failing query: dlt raises a missing column as the
    same `DatabaseTerminalException` as a refused permission or a type error.
    """
    rows = client.execute_sql(
        "select 1 from information_schema.columns"
        " where table_schema = %s and table_name = %s and column_name = %s",
        client.dataset_name,
        table,
        column,
    )
    return bool(rows)


def newest(client: SqlClientBase, table: str, column: str) -> datetime | None:
    """The largest value of a timestamp column (None: no table, no rows, or no such column yet,
    so the caller reads everything). Any other SQL error is raised."""
    if not has_column(client, table, column):
        return None
    qualified = client.make_qualified_table_name(table)
    value = client.execute_sql(f"select max({client.escape_column_name(column)}) from {qualified}")
    found = value[0][0] if value else None
    return found if isinstance(found, datetime) else None


def stored_columns(client: SqlJobClientBase, table: str) -> dict[str, Any]:
    """A table's columns as the warehouse has them, in dlt's types ({} if no table)."""
    return dict(client.get_storage_table(table)[1])
