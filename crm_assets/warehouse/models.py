"""Models built in the warehouse from the CRM tables, in SQL, so the data never leaves it."""

from __future__ import annotations

from collections.abc import Mapping

from dlt.destinations.sql_client import SqlClientBase

from crm_assets.source.schema import DELETED_AT, CrmSchema
from crm_assets.warehouse.resource import ANALYTICS_SCHEMA

ACCOUNT_SUMMARY_TABLE = f"{ANALYTICS_SCHEMA}.account_summary"

# What each output column of account_summary is computed from: (table, column) of the CRM
# tables. The UI shows it as column lineage, and the schema in force must declare every one.
ACCOUNT_SUMMARY_LINEAGE: dict[str, tuple[tuple[str, str], ...]] = {
    "account_id": (("account", "id"),),
    "account_name": (("account", "name"),),
    "status": (("account", "status"),),
    "currency": (("account", "currency"),),
    "contact_count": (("contact", "account_id"), ("account", "id")),
    "open_opportunity_count": (
        ("opportunity", "customer_id"),
        ("opportunity", "is_closed"),
        ("account", "id"),
    ),
    "open_amount": (
        ("opportunity", "customer_id"),
        ("opportunity", "is_closed"),
        ("opportunity", "amount"),
        ("opportunity", "currency"),
        ("account", "currency"),
    ),
    "open_opportunities_in_other_currencies": (
        ("opportunity", "customer_id"),
        ("opportunity", "is_closed"),
        ("opportunity", "currency"),
        ("account", "currency"),
    ),
}
# Columns the SQL computes with, and the declared types it can compute with.
_NEEDS_TYPE: dict[tuple[str, str], tuple[str, ...]] = {
    ("opportunity", "is_closed"): ("bool",),
    ("opportunity", "amount"): ("decimal", "double", "bigint"),
}


def unmet_columns(
    lineage: Mapping[str, tuple[tuple[str, str], ...]], schema: CrmSchema
) -> list[str]:
    """What `schema` lacks of the columns a model reads, e.g. `opportunity.is_closed (missing)`:
    a model is built only on columns the schema declares, never to fail mid-run."""
    problems = []
    wanted = dict.fromkeys(pair for pairs in lineage.values() for pair in pairs)
    for table, column in wanted:
        declared = {c.name: c for c in schema.columns(table)}
        if column not in declared:
            problems.append(f"{table}.{column} (missing)")
        elif (types := _NEEDS_TYPE.get((table, column))) and declared[
            column
        ].data_type not in types:
            got = declared[column].data_type
            problems.append(f"{table}.{column} ({got}, needs {' or '.join(types)})")
    return problems


# Amounts are summed only in the account's own currency: adding EUR to USD would be wrong, so
# open deals in another currency are counted instead. Rows marked deleted are left out. Links
# join as text: a CRM may send its ids as strings and its links as numbers, or the other way.
_ACCOUNT_SUMMARY_SQL = """
create table {target} as
with accounts as (
    select id, cast(id as varchar) as account_key, name, status, currency
    from {account} where {deleted} is null
),
contacts as (
    select cast(account_id as varchar) as account_key, count(*) as contact_count
    from {contact} where {deleted} is null and account_id is not null
    group by 1
),
open_deals as (
    select
        a.account_key,
        count(*) as open_opportunity_count,
        sum(case when o.currency = a.currency then o.amount end) as open_amount,
        sum(case when o.currency is distinct from a.currency then 1 else 0 end)
            as open_opportunities_in_other_currencies
    from {opportunity} o join accounts a on a.account_key = cast(o.customer_id as varchar)
    where o.{deleted} is null and not o.is_closed
    group by a.account_key
)
select
    a.id as account_id,
    a.name as account_name,
    a.status,
    a.currency,
    coalesce(c.contact_count, 0) as contact_count,
    coalesce(d.open_opportunity_count, 0) as open_opportunity_count,
    cast(coalesce(d.open_amount, 0) as decimal(38, 9)) as open_amount,
    coalesce(d.open_opportunities_in_other_currencies, 0)
        as open_opportunities_in_other_currencies
from accounts a
left join contacts c on c.account_key = a.account_key
left join open_deals d on d.account_key = a.account_key
"""


def build_account_summary(client: SqlClientBase) -> int:
    """Rebuilds `analytics.account_summary` in one transaction; returns its row count."""
    name = client.make_qualified_table_name
    sql = _ACCOUNT_SUMMARY_SQL.format(
        target=ACCOUNT_SUMMARY_TABLE,
        account=name("account"),
        contact=name("contact"),
        opportunity=name("opportunity"),
        deleted=DELETED_AT,
    )
    with client.begin_transaction():
        client.execute_sql(f"create schema if not exists {ANALYTICS_SCHEMA}")
        client.execute_sql(f"drop table if exists {ACCOUNT_SUMMARY_TABLE}")
        client.execute_sql(sql)
    return client.execute_sql(f"select count(*) from {ACCOUNT_SUMMARY_TABLE}")[0][0]


def account_summary_coverage(client: SqlClientBase) -> tuple[int, int, int]:
    """(rows, distinct non-null account ids) in the summary, and live accounts in the CRM table:
    all three equal when it has exactly one row per live account."""
    summary = client.execute_sql(
        f"select count(*), count(distinct account_id) from {ACCOUNT_SUMMARY_TABLE}"
    )[0]
    accounts = client.make_qualified_table_name("account")
    live = client.execute_sql(f"select count(*) from {accounts} where {DELETED_AT} is null")[0][0]
    return int(summary[0]), int(summary[1]), int(live)
