"""The account summary model equals an independent computation on the sandbox's records."""

from pathlib import Path

from crm_assets.defs.analytics.assets import ACCOUNT_SUMMARY
from crm_assets.warehouse.models import account_summary_coverage
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync, on_each_destination
from crm_assets_tests.support import expected_summary
from crm_assets_tests.warehouse_rows import account_summary_rows


@on_each_destination
def test_account_summary_matches_the_crm_and_leaves_out_deleted_rows(
    make_sandbox: SandboxFactory, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 150, "contact": 400, "lead": 10, "opportunity": 500})

    first = sync_all(sandbox)

    assert first.success
    expected = expected_summary(sandbox.store)
    assert account_summary_rows(warehouse) == expected
    assert sum(row[4] for row in expected.values()) > 0  # some deals in another currency
    assert sum(row[2] for row in expected.values()) > 0

    account, contact = sandbox.store.records("account")[4], sandbox.store.records("contact")[0]
    deal = next(d for d in sandbox.store.records("opportunity") if not d["is_closed"])
    sandbox.store.delete("account", account["id"])
    sandbox.store.delete("contact", contact["id"])
    sandbox.store.delete("opportunity", deal["id"])

    last = sync_all(sandbox)
    assert last.success
    assert account_summary_rows(warehouse) == expected_summary(sandbox.store)
    (summary,) = [
        e for e in last.get_asset_materialization_events() if e.asset_key == ACCOUNT_SUMMARY
    ]
    metadata = summary.materialization.metadata
    assert metadata["dagster/row_count"].value == 149
    assert metadata["live_accounts"].value == 149
    assert metadata["dagster/table_name"].value == warehouse.table_name(
        "account_summary", "analytics"
    )
    types = {c.name: c.type for c in metadata["dagster/column_schema"].schema.columns}
    assert types["open_amount"] == "decimal(38,9)"
    (check,) = [e for e in last.get_asset_check_evaluations() if e.asset_key == ACCOUNT_SUMMARY]
    assert check.passed, check.description


def test_the_coverage_check_sees_a_duplicate_and_a_missing_account(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "w.duckdb"))
    with warehouse.connect(read_only=False) as connection:
        connection.execute("create schema crm; create schema analytics")
        connection.execute("create table crm.account (id bigint, _deleted_at timestamp)")
        connection.execute("insert into crm.account values (1, null), (2, null), (3, now())")
        connection.execute("create table analytics.account_summary (account_id bigint)")
        connection.execute("insert into analytics.account_summary values (1), (1), (null)")
    with warehouse.sql_client() as client:
        rows, distinct_ids, live = account_summary_coverage(client)
    assert (rows, distinct_ids, live) == (3, 1, 2)
