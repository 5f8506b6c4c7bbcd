"""Reads CRM tables back into the API's record shape, so tests compare record for record."""

import json
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dlt.destinations.sql_client import SqlClientBase

from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import DELETED_AT, declared_columns, rename_map
from crm_assets.warehouse.resource import WarehouseResource
from crm_sandbox import CrmStore

_DLT_COLUMNS = {"_dlt_load_id", "_dlt_id", DELETED_AT}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _child_tables(client: SqlClientBase, table: str) -> set[str]:
    rows = client.execute_sql(
        "select table_name from information_schema.tables where table_schema = %s",
        client.dataset_name,
    )
    return {row[0] for row in rows or [] if row[0].startswith(f"{table}__")}


def warehouse_records(
    warehouse: WarehouseResource, table: str, open_client: SqlClientBase | None = None
) -> list[dict[str, Any]]:
    """Rows of `table` back in the API's shape: API field names, objects, lists.

    Neutral names go back to the vendor's, `a__b` columns fold into objects, JSON columns are
    parsed, and any child tables (undeclared lists) are attached. Read through dlt's SQL
    client (`open_client` if given), so the same on every destination.
    """
    api_names = {neutral: api for api, neutral in rename_map(table).items()}
    json_columns = {c.name for c in declared_columns(table) if c.data_type == "json"}
    with nullcontext(open_client) if open_client else warehouse.sql_client() as client:
        tables = _child_tables(client, table)
        with client.execute_query(
            f"select * from {client.make_qualified_table_name(table)} order by id"
        ) as cursor:
            columns = [c[0] for c in cursor.native_cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        children: dict[str, dict[str, list[Any]]] = {}
        for child in sorted(t for t in tables if t.startswith(f"{table}__")):
            field = child.removeprefix(f"{table}__")
            qualified = client.make_qualified_table_name(child)
            query = f"select _dlt_parent_id, value from {qualified} order by _dlt_list_idx"
            for parent_id, value in client.execute_sql(query) or []:
                children.setdefault(field, {}).setdefault(parent_id, []).append(_plain(value))
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for column, value in row.items():
            if column in _DLT_COLUMNS:
                continue
            if column in json_columns and isinstance(value, str):  # Postgres parses it itself
                value = json.loads(value)
            column = api_names.get(column, column)
            if "__" in column:
                parent, field = column.split("__", 1)
                record.setdefault(parent, {})[field] = _plain(value)
            else:
                record[column] = _plain(value)
        for parent, value in list(record.items()):
            if isinstance(value, dict) and all(v is None for v in value.values()):
                record[parent] = None
        for field, by_parent in children.items():
            record[field] = by_parent.get(row["_dlt_id"], [])
        records.append(record)
    return records


def assert_tables_match(
    store: CrmStore, warehouse: WarehouseResource, names: Iterable[str] | None = None
) -> None:
    """Each table of `names` (default: every CRM table) holds `store`'s records, read back
    through one SQL client."""
    with warehouse.sql_client() as client:
        for name in crm_resource_names() if names is None else names:
            assert_same_records(store.records(name), warehouse_records(warehouse, name, client))


def assert_same_records(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> None:
    """Same ids in order, every API field equal (an absent all-null column counts as None)."""
    assert [r["id"] for r in actual] == [r["id"] for r in expected]
    for want, got in zip(expected, actual, strict=True):
        for field, value in want.items():
            if value == []:
                assert got.get(field) in (None, []), (want["id"], field)
            else:
                assert got.get(field) == value, (want["id"], field)


def account_summary_rows(warehouse: WarehouseResource) -> dict[Any, tuple[Any, ...]]:
    """`analytics.account_summary` by account id: name, contacts, open deals, open amount,
    open deals in other currencies."""
    query = (
        "select account_id, account_name, contact_count, open_opportunity_count, open_amount,"
        " open_opportunities_in_other_currencies from analytics.account_summary"
    )
    with warehouse.sql_client() as client:
        return {row[0]: tuple(row[1:]) for row in client.execute_sql(query)}
