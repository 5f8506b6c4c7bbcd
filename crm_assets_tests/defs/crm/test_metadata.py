"""What a CRM table's materialization shows: the declared columns, then undeclared ones."""

from crm_assets.defs.crm.metadata import column_schema


def test_the_ui_schema_carries_descriptions_and_undeclared_columns() -> None:
    schema = column_schema("opportunity", {"id": {}, "region_code": {"data_type": "bigint"}})
    by_name = {c.name: c for c in schema.columns}
    assert by_name["customer_id"].description == "The account the deal is with"
    assert by_name["amount"].constraints.nullable is False
    assert by_name["region_code"].type == "bigint"
    assert list(by_name)[-1] == "region_code"
