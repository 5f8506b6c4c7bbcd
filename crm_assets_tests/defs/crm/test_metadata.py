"""What a CRM table's materialization shows: the declared columns, then undeclared ones."""

from pathlib import Path

import pytest
import yaml

from crm_assets.defs.crm.metadata import column_schema
from crm_assets.source.schema import SCHEMA_FILE


def test_the_ui_schema_carries_descriptions_and_undeclared_columns() -> None:
    schema = column_schema("opportunity", {"id": {}, "region_code": {"data_type": "bigint"}})
    by_name = {c.name: c for c in schema.columns}
    assert by_name["customer_id"].description == "The account the deal is with"
    assert by_name["amount"].constraints.nullable is False
    assert by_name["region_code"].type == "bigint"
    assert list(by_name)[-3:] == ["region_code", "_dlt_load_id", "_dlt_id"]
    assert by_name["_dlt_load_id"].type == "text"


def test_before_any_load_the_ui_schema_is_the_declared_columns_and_dlts_own() -> None:
    names = [c.name for c in column_schema("account").columns]
    assert names[:2] == ["id", "name"]
    assert names[-3:] == ["_deleted_at", "_dlt_load_id", "_dlt_id"]


def test_declared_decimal_digits_show_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = yaml.safe_load(SCHEMA_FILE.read_text())
    columns = document["tables"]["account"]["columns"]
    columns["id"].update(data_type="decimal", precision=20)
    columns["annual_revenue"].update(precision=20, scale=2)
    schema = tmp_path / "crm.schema.yaml"
    schema.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("CRM_SCHEMA_FILE", str(schema))

    types = {c.name: c.type for c in column_schema("account").columns}

    assert types["id"] == "decimal(20,0)"  # an id keeps no decimals
    assert types["annual_revenue"] == "decimal(20,2)"
    assert types["employee_count"] == "bigint"
