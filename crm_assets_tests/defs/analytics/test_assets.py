"""The account summary model equals an independent computation on the sandbox's records."""

from collections import Counter, defaultdict
from decimal import Decimal

from crm_assets.defs.analytics.assets import ACCOUNT_SUMMARY
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, Sync
from crm_sandbox import CrmStore


def expected_summary(store: CrmStore) -> dict[int, tuple]:
    accounts = {a["id"]: a for a in store.records("account")}
    contacts = Counter(c["account_id"] for c in store.records("contact"))
    open_count: Counter[int] = Counter()
    open_amount: dict[int, Decimal] = defaultdict(Decimal)
    other: Counter[int] = Counter()
    for deal in store.records("opportunity"):
        account = accounts.get(deal["customer_id"])
        if account is None or deal["is_closed"]:
            continue
        open_count[account["id"]] += 1
        if deal["currency"] == account["currency"]:
            open_amount[account["id"]] += Decimal(str(deal["amount"]))
        else:
            other[account["id"]] += 1
    return {
        i: (a["name"], contacts[i], open_count[i], open_amount[i], other[i])
        for i, a in accounts.items()
    }


def _model(warehouse: WarehouseResource) -> dict[int, tuple]:
    query = (
        "select account_id, account_name, contact_count, open_opportunity_count, open_amount,"
        " open_opportunities_in_other_currencies from analytics.account_summary"
    )
    with warehouse.connect() as connection:
        return {row[0]: row[1:] for row in connection.execute(query).fetchall()}


def test_account_summary_matches_the_crm_and_leaves_out_deleted_rows(
    make_sandbox: SandboxFactory, sync_all: Sync, warehouse: WarehouseResource
) -> None:
    sandbox = make_sandbox({"account": 150, "contact": 400, "lead": 10, "opportunity": 500})

    first = sync_all(sandbox)

    assert first.success
    expected = expected_summary(sandbox.store)
    assert _model(warehouse) == expected
    assert sum(row[4] for row in expected.values()) > 0  # some deals in another currency
    assert sum(row[2] for row in expected.values()) > 0

    account, contact = sandbox.store.records("account")[4], sandbox.store.records("contact")[0]
    deal = next(d for d in sandbox.store.records("opportunity") if not d["is_closed"])
    sandbox.store.delete("account", account["id"])
    sandbox.store.delete("contact", contact["id"])
    sandbox.store.delete("opportunity", deal["id"])

    assert sync_all(sandbox).success
    assert _model(warehouse) == expected_summary(sandbox.store)
    (summary,) = [
        e
        for e in sync_all(sandbox).get_asset_materialization_events()
        if e.asset_key == ACCOUNT_SUMMARY
    ]
    assert summary.materialization.metadata["dagster/row_count"].value == 149
