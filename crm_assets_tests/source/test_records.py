"""The record gate: neutral names, declared types, the quarantine policy; unit and end to end."""

from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import pytest

from crm_assets.source.ledger import ResourceLedger
from crm_assets.source.records import RecordGate, TypeDriftError, to_row
from crm_assets.source.schema import Column, declared_columns
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
)

ACCOUNT = declared_columns("account")


def _account(**fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": 1,
        "name": "Acme",
        "status": "active",
        "acme_owner_id": 7,
        "address": {"street": "1 Main", "city": "Lyon", "postal_code": "69001", "country": "FR"},
        "tags": ["smb"],
        "annual_revenue": 1234.5,
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2024-01-03T03:04:05+02:00",
    }
    return {**record, **fields}


def test_a_record_becomes_a_typed_row_under_neutral_names() -> None:
    row = to_row(_account(), ACCOUNT)

    assert row["owner_id"] == 7
    assert "acme_owner_id" not in row
    assert row["address__city"] == "Lyon"
    assert "address" not in row
    assert row["tags"] == ["smb"]
    assert row["annual_revenue"] == Decimal("1234.5")
    assert row["created_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["updated_at"] == datetime(2024, 1, 3, 1, 4, 5, tzinfo=UTC)
    assert row["parent_account_id"] is None  # documented, absent here: still a column


def test_a_null_object_gives_null_columns_and_undeclared_fields_pass_through() -> None:
    row = to_row(_account(address=None, region="emea"), ACCOUNT)
    assert [row[f"address__{f}"] for f in ("street", "city", "postal_code", "country")] == [
        None
    ] * 4
    assert row["region"] == "emea"

    extra = to_row(_account(address={"city": "Lyon", "floor": 3}), ACCOUNT)
    assert extra["address__city"] == "Lyon"
    assert extra["address__floor"] == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (Column("n", "bigint"), "12"),
        (Column("n", "bigint"), True),
        (Column("n", "bigint"), 2**63),
        (Column("n", "double"), "1.5"),
        (Column("n", "decimal"), "n/a"),
        (Column("n", "decimal"), 1.23456),  # more decimals than the column keeps
        (Column("n", "decimal"), 10**15),
        (Column("n", "text"), 5),
        (Column("n", "bool"), "true"),
        (Column("n", "timestamp"), "yesterday"),
        (Column("n", "timestamp"), 1700000000),
        (Column("n", "date"), "2024-13-01"),
        (Column("n", "json"), "[1]"),
        (Column("n", "text", nullable=False), None),
        (Column("n__city", "text"), "not an object"),
    ],
)
def test_values_of_the_wrong_type_are_drift_not_coerced(column: Column, value: object) -> None:
    record = {"n": value}
    with pytest.raises(TypeDriftError) as drift:
        to_row(record, (column,))
    message = str(drift.value)
    assert message.startswith("field 'n")
    assert not isinstance(value, str) or value not in message  # never the value itself


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (Column("n", "double"), 2, 2.0),
        (Column("n", "decimal"), "10.1234", Decimal("10.1234")),
        (Column("n", "decimal"), 3, Decimal(3)),
        (Column("n", "timestamp"), "2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (Column("n", "date"), "2024-05-01", date(2024, 5, 1)),
        (Column("n", "json"), {"a": 1}, {"a": 1}),
        (Column("n", "bool"), False, False),
    ],
)
def test_values_of_the_declared_type_convert_exactly(
    column: Column, value: object, expected: object
) -> None:
    assert to_row({"n": value}, (column,))["n"] == expected


def test_the_gate_quarantines_drift_and_id_less_records_and_counts_them() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger)

    assert gate(_account(id=1)) is not None
    assert gate(_account(id=2, annual_revenue="lots")) is None
    assert gate(_account(id=None)) is None
    assert gate(_account(id="3")) is None
    assert gate(_account(id=1)) is not None

    assert (ledger.received, ledger.ids, ledger.duplicate_ids) == (5, {1, 2}, 1)
    assert (ledger.without_id, ledger.quarantined) == (2, 1)
    reasons = [r.reason for r in ledger.rejections]
    assert reasons[0] == "field 'annual_revenue': expected decimal, got str"
    assert all("lots" not in reason for reason in reasons)


def test_drifted_records_are_quarantined_and_the_last_good_row_stays(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox, "crm/opportunity").success
    sandbox.store.update("opportunity", 5, {"amount": "n/a", "name": "Changed deal"})
    sandbox.store.update("opportunity", 6, {"is_closed": "yes"})
    sandbox.store.put_raw("opportunity", {"name": "no id", "amount": 10})

    result = sync(sandbox, "crm/opportunity")

    assert result.success
    with warehouse.connect() as connection:
        names = dict(connection.execute("select id, name from crm.opportunity").fetchall())
        quarantined = connection.execute(
            "select resource, record_id, reason, record->>'name' from crm._quarantine"
            " order by record_id nulls first"
        ).fetchall()
    assert len(names) == 120
    assert names[5] != "Changed deal"
    assert quarantined == [
        ("opportunity", None, "field 'id': expected non-null bigint, got NoneType", "no id"),
        ("opportunity", 5, "field 'amount': expected decimal, got str", "Changed deal"),
        ("opportunity", 6, "field 'is_closed': expected bool, got str", names[6]),
    ]
    metadata = materialization_metadata(result, "opportunity")
    assert (metadata["records_quarantined"], metadata["records_without_id"]) == (2, 1)
    assert (metadata["records_received"], metadata["api_total"]) == (121, 121)
    rejected = check_result(result, "opportunity", "no_rejected_records")
    assert not rejected.passed
    assert rejected.severity == dg.AssetCheckSeverity.WARN
    assert check_result(result, "opportunity", "reconciled_with_api").passed


def test_an_undeclared_field_that_changes_type_fails_clearly_and_loads_nothing(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(50)
    sandbox.store.update("lead", 3, {"region_code": 44})
    assert sync(sandbox, "crm/lead").success
    sandbox.store.update("lead", 4, {"region_code": "forty-four", "status": "nurturing"})

    failed = sync(sandbox, "crm/lead")

    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "undeclared field 'region_code' changed type" in message
    assert "Nothing was loaded" in message
    assert "forty-four" not in message
    with warehouse.connect() as connection:
        status = connection.execute("select status from crm.lead where id = 4").fetchone()[0]
    assert status != "nurturing"

    sandbox.store.update("lead", 4, {"region_code": 45})
    assert sync(sandbox, "crm/lead").success
    with warehouse.connect() as connection:
        row = connection.execute("select status, region_code from crm.lead where id = 4").fetchone()
    assert row == ("nurturing", 45)
