"""The analytics models as Dagster assets; their SQL lives in `crm_assets.warehouse.models`."""

import dagster as dg

from crm_assets.defs.crm.translator import asset_key
from crm_assets.warehouse.models import ACCOUNT_SUMMARY_TABLE, build_account_summary
from crm_assets.warehouse.resource import (
    ANALYTICS_SCHEMA,
    DEFAULT_DESTINATION,
    WAREHOUSE_POOL,
    WarehouseResource,
)

ANALYTICS_GROUP = "analytics"
ACCOUNT_SUMMARY = dg.AssetKey([ANALYTICS_SCHEMA, "account_summary"])

_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("account_id", "bigint", description="Live CRM account"),
        dg.TableColumn("account_name", "text"),
        dg.TableColumn("status", "text"),
        dg.TableColumn("currency", "text", description="The account's currency"),
        dg.TableColumn("contact_count", "bigint", description="Live contacts of the account"),
        dg.TableColumn("open_opportunity_count", "bigint", description="Deals not closed"),
        dg.TableColumn("open_amount", "decimal", description="Open deals in `currency`"),
        dg.TableColumn(
            "open_opportunities_in_other_currencies",
            "bigint",
            description="Open deals priced in another currency (not in open_amount)",
        ),
    ]
)


@dg.asset(
    key=ACCOUNT_SUMMARY,
    deps=[asset_key("account"), asset_key("contact"), asset_key("opportunity")],
    group_name=ANALYTICS_GROUP,
    kinds={"sql", DEFAULT_DESTINATION},
    pool=WAREHOUSE_POOL,
    automation_condition=dg.AutomationCondition.eager(),
    description="Per live account: contacts, open opportunities and their amount.",
)
def account_summary(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.sql_client() as client:
        rows = build_account_summary(client)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": ACCOUNT_SUMMARY_TABLE,
            "dagster/column_schema": _COLUMNS,
        }
    )


def account_summary_on(destination: str) -> dg.AssetsDefinition:
    """`account_summary` with the warehouse's destination as its kind."""
    return account_summary.map_asset_specs(
        lambda spec: spec.replace_attributes(kinds={"sql", destination})
    )
