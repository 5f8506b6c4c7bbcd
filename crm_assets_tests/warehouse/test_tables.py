"""After the load: records deleted upstream are marked, not kept as live, and can come back."""

from datetime import UTC, datetime

import pytest
from dlt.destinations.exceptions import DatabaseTerminalException

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets.warehouse.tables import newest
from crm_assets_tests.conftest import (
    SandboxFactory,
    Sync,
    check_result,
    materialization_metadata,
    on_each_destination,
)
from crm_assets_tests.warehouse_rows import assert_same_records, warehouse_records


def _deleted_at(warehouse: WarehouseResource) -> dict[int, object]:
    with warehouse.sql_client() as client:
        table = client.make_qualified_table_name("contact")
        rows = client.execute_sql(
            f"select id, _deleted_at from {table} where _deleted_at is not null"
        )
    return {row[0]: row[1] for row in rows}


@on_each_destination
def test_records_deleted_upstream_are_marked_and_the_rest_untouched(
    make_sandbox: SandboxFactory, sync: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox(250)
    assert sync(sandbox, "crm/contact").success
    before = {r["id"]: r for r in warehouse_records(warehouse, "contact")}
    gone = [sandbox.store.records("contact")[i] for i in (2, 150)]
    for record in gone:
        sandbox.store.delete("contact", record["id"])

    result = sync(sandbox, "crm/contact")

    assert result.success
    marked = _deleted_at(warehouse)
    assert set(marked) == {r["id"] for r in gone}
    after = {r["id"]: r for r in warehouse_records(warehouse, "contact")}
    assert [after[r["id"]] for r in gone] == [before[r["id"]] for r in gone]  # last values kept
    live = [after[i] for i in sorted(after) if i not in marked]
    assert_same_records(sandbox.store.records("contact"), live)
    check = check_result(result, "contact", "gone_upstream")
    assert not check.passed
    assert check.metadata["newly_marked_deleted"].value == 2
    metadata = materialization_metadata(result, "contact")
    assert (metadata["dagster/row_count"], metadata["live_rows"]) == (250, 248)

    again = sync(sandbox, "crm/contact")

    assert check_result(again, "contact", "gone_upstream").passed
    assert _deleted_at(warehouse) == marked  # stamps stay as first set

    sandbox.store.put_raw("contact", gone[0])  # it comes back upstream
    assert sync(sandbox, "crm/contact").success
    assert set(_deleted_at(warehouse)) == {gone[1]["id"]}


@on_each_destination
def test_newest_reads_everything_without_the_column_and_raises_other_sql_errors(
    warehouse: WarehouseResource,
) -> None:
    with warehouse.sql_client() as client:
        if not client.has_dataset():
            client.create_dataset()
        table = client.make_qualified_table_name
        client.execute_sql(f"create table {table('plain')} (id bigint)")
        client.execute_sql(
            f"create table {table('stamped')} (id bigint, updated_at timestamp with time zone)"
        )
        client.execute_sql(
            f"insert into {table('stamped')} values"
            " (1, '2024-05-01T00:00:00Z'), (2, '2024-06-01T00:00:00Z')"
        )
        # the column exists, but reading it fails: not a reason to re-read everything quietly
        client.execute_sql(
            f"create view {table('unreadable')} as select cast(x as timestamp with time zone)"
            " as updated_at from (values ('not a time')) as v(x)"
        )

        assert newest(client, "missing", "updated_at") is None
        assert newest(client, "plain", "updated_at") is None
        assert newest(client, "stamped", "updated_at") == datetime(2024, 6, 1, tzinfo=UTC)
        with pytest.raises(DatabaseTerminalException, match="not a time"):
            newest(client, "unreadable", "updated_at")
