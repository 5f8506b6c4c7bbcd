"""The record gate: neutral names, lossless conversion, what is set aside; unit and end to end."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import pytest

from crm_assets.source.ledger import ResourceLedger
from crm_assets.source.records import RecordGate
from crm_assets.source.schema import declared_columns
from crm_assets.source.types import TYPES, fits
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
)
from crm_assets_tests.support import failure_message

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
        "industry": "software",
        "website": None,
        "phone": None,
        "currency": "EUR",
        "employee_count": 40,
        "parent_account_id": None,
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2024-01-03T03:04:05+02:00",
    }
    return {**record, **fields}


def _row(record: dict[str, object], strict: bool = False) -> dict[str, object] | None:
    return RecordGate("account", ResourceLedger("account"), strict)(record)


def test_a_record_becomes_a_typed_row_under_neutral_names() -> None:
    row = _row(_account())

    assert row is not None
    assert row["owner_id"] == 7
    assert "acme_owner_id" not in row
    assert row["address__city"] == "Lyon"
    assert "address" not in row
    assert row["tags"] == ["smb"]
    assert row["annual_revenue"] == Decimal("1234.5")
    assert row["created_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["updated_at"] == datetime(2024, 1, 3, 1, 4, 5, tzinfo=UTC)
    assert row["parent_account_id"] is None


def test_a_null_object_gives_null_columns_and_undeclared_fields_pass_through() -> None:
    row = _row(_account(address=None, region="emea"))
    assert row is not None
    assert [row[f"address__{f}"] for f in ("street", "city", "postal_code", "country")] == [
        None
    ] * 4
    assert row["region"] == "emea"

    extra = _row(_account(address={"city": "Lyon", "floor": 3}))
    assert extra is not None
    assert extra["address__city"] == "Lyon"
    assert extra["address__floor"] == 3


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        ("bigint", "0042"),  # leading zeros would be lost
        ("bigint", "12.5"),
        ("bigint", 12.5),
        ("bigint", True),
        ("bigint", 2**63),
        ("double", "1.5e3"),
        ("double", "12345678901234567"),  # more digits than a double keeps
        ("decimal", "n/a"),
        ("decimal", 1.1234567891),  # more decimals than the column keeps
        ("decimal", 10**29),  # more digits before the point than decimal(38,9) keeps
        ("decimal", Decimal("1E+30")),
        ("text", 5.5),
        ("text", True),
        ("text", {"a": 1}),
        ("bool", "yes"),
        ("bool", 1),
        ("timestamp", "yesterday"),
        ("timestamp", True),
        ("date", "2024-13-01"),
        ("date", "2024-05-01T10:00:00"),
        ("json", "[1]"),
    ],
)
def test_a_conversion_that_would_lose_something_does_not_fit(data_type: str, value: object) -> None:
    assert not fits(value, data_type)


@pytest.mark.parametrize(
    ("data_type", "value", "expected"),
    [
        ("bigint", "12", 12),
        ("bigint", "-3", -3),
        ("bigint", 12.0, 12),
        ("double", 2, 2.0),
        ("double", "1.5", 1.5),
        ("decimal", "1234.50", Decimal("1234.50")),
        ("decimal", 3, Decimal(3)),
        ("decimal", 1234.567891, Decimal("1234.567891")),  # a converted currency's six decimals
        ("decimal", 4512345678901234, Decimal(4512345678901234)),  # an IDR deal
        ("decimal", Decimal("4512345678901234.56"), Decimal("4512345678901234.56")),
        ("bigint", Decimal("12345678901234567"), 12345678901234567),
        ("text", Decimal("4512345678901234.56"), "4512345678901234.56"),
        ("text", 42, "42"),
        ("bool", "true", True),
        ("bool", False, False),
        ("timestamp", "2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("timestamp", "2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("timestamp", 1714557600, datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("timestamp", 1714557600000, datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("timestamp", "1714557600", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("date", "2024-05-01", date(2024, 5, 1)),
        ("json", {"a": 1}, {"a": 1}),
    ],
)
def test_lossless_conversions_are_exact(data_type: str, value: object, expected: object) -> None:
    converted = TYPES[data_type].convert(value)
    assert converted == expected
    assert type(converted) is type(expected)


def test_ids_are_kept_exactly_as_the_api_sends_them() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger)

    rows = [gate(_account(id=value)) for value in ("0042", 42, "001A000001XyZ")]

    assert [row["id"] for row in rows if row] == ["0042", 42, "001A000001XyZ"]
    assert (ledger.received, ledger.without_id) == (3, 0)
    assert ledger.drift_report(ACCOUNT) == {"id": "not bigint (kept as sent) in 2 of 3"}


def test_a_value_that_does_not_fit_loads_as_null_and_is_set_aside() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger)

    row = gate(_account(id=2, annual_revenue="lots", status=None, employee_count="120"))

    assert row is not None
    assert (row["annual_revenue"], row["status"], row["employee_count"]) == (None, None, 120)
    (aside,) = ledger.take_rejections()
    assert (aside.record_id, aside.field, aside.value) == (2, "annual_revenue", "lots")
    assert aside.reason == "field 'annual_revenue': expected decimal, got str"
    assert ledger.drift_report(ACCOUNT) == {
        "status": "null in 1 of 1",
        "annual_revenue": "1 values not decimal, set aside in _quarantine",
    }
    assert (ledger.withheld, ledger.values_set_aside) == (0, 1)


def test_a_scalar_where_an_object_is_declared_is_set_aside_per_column() -> None:
    ledger = ResourceLedger("account")

    row = RecordGate("account", ledger)(_account(address="1 Main St, Lyon"))
    set_aside = ledger.take_rejections()

    assert row is not None
    assert [row[f"address__{f}"] for f in ("street", "city", "postal_code", "country")] == [
        None
    ] * 4
    assert {r.field for r in set_aside} == {
        "address__street",
        "address__city",
        "address__postal_code",
        "address__country",
    }
    assert {r.value for r in set_aside} == {"1 Main St, Lyon"}
    assert {r.reason for r in set_aside} == {"field 'address': expected object, got str"}
    assert ledger.drifts[("address__city", "absent")] == 0


def test_records_without_a_usable_id_are_withheld_and_counted() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger)

    assert gate(_account(id=1)) is not None
    assert gate(_account(id=None)) is None
    assert gate(_account(id="")) is None
    assert gate(_account(id=True)) is None
    assert gate("not an object") is None  # type: ignore[arg-type]
    assert gate(_account(id=1)) is not None

    withheld = ledger.take_rejections()
    assert (ledger.received, ledger.without_id, ledger.withheld) == (6, 4, 4)
    assert not ledger.reconcile(landed=1).passed  # 4 without id
    assert all(r.field is None for r in withheld)
    assert [r.reason for r in withheld][:3] == [
        "field 'id': no usable id (missing)",
        "field 'id': no usable id (str)",
        "field 'id': no usable id (bool)",
    ]


def test_strict_mode_withholds_the_whole_record() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger, strict=True)

    assert gate(_account(id=1)) is not None
    assert gate(_account(id=2, annual_revenue="lots")) is None
    assert gate(_account(id=3, status=None)) is None

    withheld = ledger.take_rejections()
    assert (ledger.withheld, ledger.values_set_aside) == (2, 0)
    assert [(r.record_id, r.field) for r in withheld] == [(2, None), (3, None)]
    reasons = [r.reason for r in withheld]
    assert reasons == [
        "field 'annual_revenue': expected decimal, got str",
        "field 'status': expected non-null text, got NoneType",
    ]
    assert all("lots" not in reason for reason in reasons)
    assert not ledger.reconcile(landed=1).passed


def _quarantine(warehouse: WarehouseResource) -> list[tuple[object, ...]]:
    with warehouse.connect() as connection:
        return connection.execute(
            "select resource, record_id, field, reason, raw_value from crm._quarantine"
            " order by record_id nulls first, field"
        ).fetchall()


def test_values_that_do_not_fit_are_set_aside_and_the_row_lands(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox, "crm/opportunity").success
    sandbox.store.update("opportunity", 5, {"amount": "n/a", "name": "Changed deal"})
    sandbox.store.update("opportunity", 6, {"is_closed": "yes"})
    sandbox.store.put_raw("opportunity", {"name": "no id", "amount": 10})

    result = sync(sandbox, "crm/opportunity")

    assert not result.success  # the id-less record has no row: the blocking check fails the run
    with warehouse.connect() as connection:
        rows = connection.execute(
            "select id, name, amount, is_closed from crm.opportunity order by id"
        ).fetchall()
    by_id = {row[0]: row[1:] for row in rows}
    assert len(by_id) == 120
    assert by_id[5][:2] == ("Changed deal", None)
    assert by_id[6][2] is None
    (idless, amount, is_closed) = _quarantine(warehouse)
    assert idless[:4] == ("opportunity", None, None, "field 'id': no usable id (missing)")
    assert json.loads(idless[4]) == {"name": "no id", "amount": 10}
    assert amount == (
        "opportunity",
        "5",
        "amount",
        "field 'amount': expected decimal, got str",
        '"n/a"',
    )
    assert is_closed == (
        "opportunity",
        "6",
        "is_closed",
        "field 'is_closed': expected bool, got str",
        '"yes"',
    )
    metadata = materialization_metadata(result, "opportunity")
    assert (metadata["values_set_aside"], metadata["records_without_id"]) == (2, 1)
    assert (metadata["records_received"], metadata["api_total"]) == (121, 121)
    drift = check_result(result, "opportunity", "no_schema_drift")
    assert not drift.passed
    assert drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["field amount"].value == "1 values not decimal, set aside in _quarantine"
    assert drift.metadata["field is_closed"].value == "1 values not bool, set aside in _quarantine"
    assert "n/a" not in str(drift.description)
    assert "yes" not in str(drift.description)
    reconciled = check_result(result, "opportunity", "reconciled_with_api")
    assert not reconciled.passed  # the id-less record has no row
    assert "1 without id" in str(reconciled.description)


def test_strict_mode_quarantines_whole_records_and_the_last_good_row_stays(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(120)
    assert sync(sandbox, "crm/opportunity", schema_enforcement="strict").success
    last_good = {r["id"]: r["name"] for r in sandbox.store.records("opportunity")}
    sandbox.store.update("opportunity", 5, {"amount": "n/a", "name": "Changed deal"})
    sandbox.store.update("opportunity", 6, {"is_closed": "yes"})
    sandbox.store.put_raw("opportunity", {"name": "no id", "amount": 10})

    result = sync(sandbox, "crm/opportunity", schema_enforcement="strict")

    assert not result.success  # withheld records leave the table short: the run fails
    with warehouse.connect() as connection:
        names = dict(connection.execute("select id, name from crm.opportunity").fetchall())
    assert names == last_good
    quarantined = _quarantine(warehouse)
    assert [row[:4] for row in quarantined] == [
        ("opportunity", None, None, "field 'id': no usable id (missing)"),
        ("opportunity", "5", None, "field 'amount': expected decimal, got str"),
        ("opportunity", "6", None, "field 'is_closed': expected bool, got str"),
    ]
    assert json.loads(quarantined[1][4])["name"] == "Changed deal"
    metadata = materialization_metadata(result, "opportunity")
    assert (metadata["records_quarantined"], metadata["records_without_id"]) == (3, 1)
    assert (metadata["records_received"], metadata["api_total"]) == (121, 121)
    assert not check_result(result, "opportunity", "no_schema_drift").passed
    reconciled = check_result(result, "opportunity", "reconciled_with_api")
    assert not reconciled.passed
    assert "2 withheld whole" in str(reconciled.description)


def test_an_undeclared_field_that_changes_type_fails_clearly_and_loads_nothing(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(50)
    sandbox.store.update("lead", 3, {"region_code": 44})
    assert sync(sandbox, "crm/lead").success
    last_good = {r["id"]: r["status"] for r in sandbox.store.records("lead")}[4]
    sandbox.store.update("lead", 4, {"region_code": "forty-four", "status": "nurturing"})

    failed = sync(sandbox, "crm/lead")

    assert not failed.success
    message = failure_message(failed)
    assert "undeclared field 'region_code' changed type" in message
    assert "Nothing was loaded" in message
    assert "forty-four" not in message
    with warehouse.connect() as connection:
        status = connection.execute("select status from crm.lead where id = 4").fetchone()[0]
    assert status == last_good

    sandbox.store.update("lead", 4, {"region_code": 45})
    assert sync(sandbox, "crm/lead").success
    with warehouse.connect() as connection:
        row = connection.execute("select status, region_code from crm.lead where id = 4").fetchone()
    assert row == ("nurturing", 45)


def test_integer_ids_of_any_size_are_kept_and_text_ids_too() -> None:
    ledger = ResourceLedger("account")
    gate = RecordGate("account", ledger)
    ids = [2**53 + 1, 2**63 - 1, 18_000_000_000_000_010_003, 2**64 + 5, "7c9e6679-7425-40de-944b"]

    rows = [gate(_account(id=value)) for value in ids]

    assert [row["id"] for row in rows if row] == ids
    assert (ledger.received, ledger.withheld) == (5, 0)


def test_nul_bytes_are_removed_and_counted_per_field_only_where_the_warehouse_refuses_them() -> (
    None
):
    record = _account(
        id=1,
        name="Ac\x00me",
        x_vendor_extra={"no\x00te": ["a\x00", 1]},
        notes="fine",
    )
    ledger = ResourceLedger("account")

    row = RecordGate("account", ledger, strip_nul=True)(record)
    kept = RecordGate("account", ResourceLedger("account"))(record)

    assert row is not None
    assert kept is not None
    assert (row["name"], row["x_vendor_extra"]) == ("Acme", {"note": ["a", 1]})
    assert row["notes"] == "fine"
    assert kept["name"] == "Ac\x00me"  # DuckDB keeps them: loaded as sent
    report = ledger.drift_report(ACCOUNT)
    assert report["name"] == "NUL bytes removed in 1 of 1"
    assert report["x_vendor_extra"] == "NUL bytes removed in 1 of 1"


def test_a_text_id_holding_a_nul_is_withheld_where_nul_cannot_be_stored() -> None:
    ledger = ResourceLedger("lead")
    gate = RecordGate("lead", ledger, strip_nul=True)

    assert gate(_account(id="ab\x00c")) is None

    (rejection,) = ledger.take_rejections()
    assert "NUL" in rejection.reason
    assert "\x00" not in str(rejection.record_id)
    assert ledger.withheld_with_id == 1
