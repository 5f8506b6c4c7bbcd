"""A CRM the declared schema was not written for (the sandbox's foreign dialect), synced unedited.

Every record with an id lands with the API's values after lossless conversion, the drift check
names each field that did not match with its count, and nothing but id-less records is withheld.
"""

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import declared_columns
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync, check_result
from crm_assets_tests.support import expected_summary
from crm_sandbox import CrmStore

SIZES = {"account": 120, "contact": 150, "lead": 90, "opportunity": 160}


def _rows(warehouse: WarehouseResource, table: str) -> dict[Any, dict[str, Any]]:
    with warehouse.connect() as connection:
        cursor = connection.execute(f"select * from crm.{table}")
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return {row["id"]: row for row in rows}


def _converted(column_type: str, value: Any) -> Any:
    """The default dialect's value as the declared type holds it (the foreign one is the same)."""
    if value is None:
        return None
    if column_type == "decimal":
        return Decimal(str(value))
    if column_type == "timestamp":
        return datetime.fromisoformat(value)
    if column_type == "date":
        return date.fromisoformat(value)
    return value


def _expected_row(resource: str, plain: dict[str, Any], foreign: dict[str, Any]) -> dict:
    """What the warehouse should hold for one record, from the same record in plain dialect."""
    expected = {}
    for column in declared_columns(resource):
        if column.is_primary_key or column.name == "_deleted_at":
            continue
        if column.name == "status":
            value = foreign["status"]  # the foreign CRM leaves some statuses null
        elif column.name in ("stage", "owner_id"):
            value = None  # the foreign CRM has no stage, and names the owner hs_owner_id
        elif column.name.startswith("address__"):
            value = (plain["address"] or {}).get(column.name.removeprefix("address__"))
        else:
            value = plain[column.name]
        expected[column.name] = _converted(column.data_type, value)
    expected["hs_owner_id"] = plain["acme_owner_id"]
    expected["metadata__region"] = foreign["metadata"]["region"]
    return expected


def test_an_unedited_checkout_loads_every_foreign_record_and_names_the_drift(
    make_sandbox: SandboxFactory, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(SIZES, dialect="foreign")
    plain = CrmStore(SIZES)  # the same CRM in the sandbox's own dialect: the expected values

    result = sync_all(sandbox)

    assert result.success
    for name in crm_resource_names():
        foreign_records = sandbox.store.records(name)
        rows = _rows(warehouse, name)
        assert sorted(rows) == sorted(r["id"] for r in foreign_records), name  # ids as sent
        for foreign, original in zip(foreign_records, plain.records(name), strict=True):
            row = rows[foreign["id"]]
            if row.get("tags") is not None:
                row["tags"] = json.loads(row["tags"])
            expected = _expected_row(name, original, foreign)
            assert {k: row.get(k) for k in expected} == expected, (name, foreign["id"])
        assert check_result(result, name, "reconciled_with_api").passed, name
        assert check_result(result, name, "id_unique_not_null").passed, name
        assert check_result(result, name, "declared_columns").passed, name

        drift = check_result(result, name, "no_schema_drift")
        total = len(foreign_records)
        expected_drift = {
            "field id": f"not bigint (kept as sent) in {total} of {total}",
            "field owner_id": f"absent in {total} of {total}",
        }
        null_statuses = sum(r.get("status", "") is None for r in foreign_records)
        if name == "opportunity":
            expected_drift["field stage"] = f"absent in {total} of {total}"
        else:
            assert null_statuses > 0
            expected_drift["field status"] = f"null in {null_statuses} of {total}"
        fields = {k: v.value for k, v in drift.metadata.items() if k.startswith("field ")}
        assert not drift.passed
        assert fields == expected_drift, name
        assert drift.metadata["values_set_aside"].value == 0
        assert drift.metadata["records_withheld"].value == 0
    with warehouse.connect() as connection:
        query = "select table_name from information_schema.tables where table_schema = 'crm'"
        tables = {row[0] for row in connection.execute(query).fetchall()}
        summary = connection.execute(
            "select account_id, account_name, contact_count, open_opportunity_count,"
            " open_amount, open_opportunities_in_other_currencies from analytics.account_summary"
        ).fetchall()
    assert "_quarantine" not in tables  # nothing was set aside or withheld
    assert {int(row[0]): row[1:] for row in summary} == expected_summary(plain)
