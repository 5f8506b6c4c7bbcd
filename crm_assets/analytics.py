"""Models built in the warehouse from the CRM tables, in SQL, so the data never leaves it."""

import dagster as dg

from crm_assets.resources import ANALYTICS_SCHEMA, WAREHOUSE_POOL, WarehouseResource
from crm_assets.schema import DELETED_AT
from crm_assets.translator import asset_key

ANALYTICS_GROUP = "analytics"
ACCOUNT_SUMMARY = dg.AssetKey([ANALYTICS_SCHEMA, "account_summary"])

# Amounts are summed only in the account's own currency: adding EUR to USD would be wrong, so
# open deals in another currency are counted instead. Rows marked deleted are left out.
_ACCOUNT_SUMMARY_SQL = """
create table {target} as
with accounts as (
    select id, name, status, currency from {account} where {deleted} is null
),
contacts as (
    select account_id, count(*) as contact_count
    from {contact} where {deleted} is null and account_id is not null
    group by account_id
),
open_deals as (
    select
        o.customer_id as account_id,
        count(*) as open_opportunity_count,
        sum(case when o.currency = a.currency then o.amount end) as open_amount,
        sum(case when o.currency is distinct from a.currency then 1 else 0 end)
            as open_opportunities_in_other_currencies
    from {opportunity} o join accounts a on a.id = o.customer_id
    where o.{deleted} is null and not o.is_closed
    group by o.customer_id
)
select
    a.id as account_id,
    a.name as account_name,
    a.status,
    a.currency,
    coalesce(c.contact_count, 0) as contact_count,
    coalesce(d.open_opportunity_count, 0) as open_opportunity_count,
    coalesce(d.open_amount, 0) as open_amount,
    coalesce(d.open_opportunities_in_other_currencies, 0)
        as open_opportunities_in_other_currencies
from accounts a
left join contacts c on c.account_id = a.id
left join open_deals d on d.account_id = a.id
"""

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
    kinds={"sql", "duckdb"},
    pool=WAREHOUSE_POOL,
    automation_condition=dg.AutomationCondition.eager(),
    description="Per live account: contacts, open opportunities and their amount.",
)
def account_summary(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.sql_client() as client:
        name = client.make_qualified_table_name
        target = f"{ANALYTICS_SCHEMA}.account_summary"
        sql = _ACCOUNT_SUMMARY_SQL.format(
            target=target,
            account=name("account"),
            contact=name("contact"),
            opportunity=name("opportunity"),
            deleted=DELETED_AT,
        )
        with client.begin_transaction():
            client.execute_sql(f"create schema if not exists {ANALYTICS_SCHEMA}")
            client.execute_sql(f"drop table if exists {target}")
            client.execute_sql(sql)
        rows = client.execute_sql(f"select count(*) from {target}")[0][0]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": f"{ANALYTICS_SCHEMA}.account_summary",
            "dagster/column_schema": _COLUMNS,
        }
    )


def build_analytics_automation_sensor(interval_s: int) -> dg.AutomationConditionSensorDefinition:
    """Runs the models' eager conditions, on by default: a sync of any parent rebuilds them.

    Dagster's own default automation sensor starts stopped, which would leave the models stale
    after every sensor-driven sync.
    """
    return dg.AutomationConditionSensorDefinition(
        "analytics_automation_sensor",
        target=dg.AssetSelection.groups(ANALYTICS_GROUP),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_s,
        description="Rebuilds the analytics models once the CRM tables they read have synced.",
    )
