"""The analytics models as Dagster assets; their SQL lives in `crm_assets.warehouse.models`."""

from collections.abc import Iterator

import dagster as dg

from crm_assets.defs.crm.translator import asset_key
from crm_assets.warehouse.models import account_summary_coverage, build_account_summary
from crm_assets.warehouse.resource import ANALYTICS_SCHEMA, WAREHOUSE_POOL, WarehouseResource

ANALYTICS_GROUP = "analytics"
ACCOUNT_SUMMARY = dg.AssetKey([ANALYTICS_SCHEMA, "account_summary"])
ONE_ROW_PER_ACCOUNT = "one_row_per_live_account"

COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn(
            "account_id",
            "bigint",
            description="Live CRM account (the CRM's id type)",
            constraints=dg.TableColumnConstraints(nullable=False, unique=True),
        ),
        dg.TableColumn("account_name", "text", description="Company name"),
        dg.TableColumn("status", "text", description="active, prospect or churned"),
        dg.TableColumn("currency", "text", description="The account's currency (ISO 4217)"),
        dg.TableColumn("contact_count", "bigint", description="Live contacts of the account"),
        dg.TableColumn("open_opportunity_count", "bigint", description="Live deals not yet closed"),
        dg.TableColumn(
            "open_amount",
            "decimal(38,4)",
            description="Sum of open deals priced in the account's currency; 0 if none",
        ),
        dg.TableColumn(
            "open_opportunities_in_other_currencies",
            "bigint",
            description="Open deals priced in another currency (not in open_amount)",
        ),
    ]
)


def build_account_summary_asset(
    freshness_policy: dg.FreshnessPolicy | None = None,
    target: WarehouseResource | None = None,
) -> dg.AssetsDefinition:
    """`analytics/account_summary`; `target` (the configured warehouse) names its kind and
    table in the definitions, while a run builds it through the `warehouse` resource."""
    target = target or WarehouseResource()

    @dg.asset(
        key=ACCOUNT_SUMMARY,
        deps=[asset_key("account"), asset_key("contact"), asset_key("opportunity")],
        group_name=ANALYTICS_GROUP,
        kinds={"sql", target.destination},
        pool=WAREHOUSE_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        freshness_policy=freshness_policy,
        description=(
            "Per live account: its contacts, open deals and their amount in the account's"
            " currency. Rebuilt in the warehouse after each sync of its tables."
        ),
        metadata={
            "dagster/table_name": target.table_name("account_summary", ANALYTICS_SCHEMA),
            "dagster/column_schema": COLUMNS,
        },
        check_specs=[
            dg.AssetCheckSpec(
                ONE_ROW_PER_ACCOUNT,
                asset=ACCOUNT_SUMMARY,
                description="Exactly one row per live account of crm/account, none without id",
            )
        ],
    )
    def account_summary(
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with warehouse.sql_client() as client:
            build_account_summary(client)
            rows, distinct_ids, live_accounts = account_summary_coverage(client)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(rows),
                "live_accounts": dg.MetadataValue.int(live_accounts),
                "dagster/table_name": warehouse.table_name("account_summary", ANALYTICS_SCHEMA),
                "dagster/column_schema": COLUMNS,
            }
        )
        yield dg.AssetCheckResult(
            check_name=ONE_ROW_PER_ACCOUNT,
            passed=rows == distinct_ids == live_accounts,
            description=(
                f"{rows} rows, {distinct_ids} distinct account ids, {live_accounts} live accounts"
            ),
            metadata={"rows": rows, "distinct_account_ids": distinct_ids, "live": live_accounts},
        )

    return account_summary
