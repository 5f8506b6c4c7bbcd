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


STAGE_DURATIONS_TABLE = f"{ANALYTICS_SCHEMA}.opportunity_stage_durations"

# One row per stint of an opportunity in a stage, from its history: consecutive versions in
# the same stage are one stint; a new stage, or a gap (deleted, then back), starts the next.
# Times are the loads' (valid_from/valid_to), so a stint's length is accurate to a sync.
_STAGE_DURATIONS_SQL = """
create table {target} as
with versions as (
    select
        id, stage, valid_from, valid_to,
        case
            when lag(stage) over w is not distinct from stage
                and lag(valid_to) over w = valid_from then 0
            else 1
        end as starts
    from {history}
    window w as (partition by id order by valid_from)
),
stints as (
    select *, sum(starts) over (
        partition by id order by valid_from rows between unbounded preceding and current row
    ) as stint
    from versions
)
select
    id as opportunity_id,
    stint as stint_number,
    min(stage) as stage,
    min(valid_from) as entered_at,
    case when count(valid_to) = count(*) then max(valid_to) end as left_at,
    case
        when count(valid_to) = count(*)
        then cast(extract(epoch from (max(valid_to) - min(valid_from))) / 3600 as double precision)
    end as hours_in_stage
from stints
group by id, stint
"""


def build_stage_durations(client: SqlClientBase) -> int:
    """Rebuilds `analytics.opportunity_stage_durations` from `crm.opportunity_history` in one
    transaction; returns its row count."""
    sql = _STAGE_DURATIONS_SQL.format(
        target=STAGE_DURATIONS_TABLE,
        history=client.make_qualified_table_name("opportunity_history"),
    )
    with client.begin_transaction():
        client.execute_sql(f"create schema if not exists {ANALYTICS_SCHEMA}")
        client.execute_sql(f"drop table if exists {STAGE_DURATIONS_TABLE}")
        client.execute_sql(sql)
    return client.execute_sql(f"select count(*) from {STAGE_DURATIONS_TABLE}")[0][0]


def stage_duration_problems(client: SqlClientBase) -> tuple[int, int]:
    """(opportunities with a current version but not exactly one open stint, stints that
    overlap the one before): both 0 when the durations partition each opportunity's history."""
    history = client.make_qualified_table_name("opportunity_history")
    open_stints = (
        f"select count(*) from (select distinct id from {history} where valid_to is null) h"
        f" where (select count(*) from {STAGE_DURATIONS_TABLE} d"
        " where d.opportunity_id = h.id and d.left_at is null) <> 1"
    )
    overlapping = (
        "select count(*) from (select entered_at, lag(left_at) over (partition by opportunity_id"
        " order by entered_at) as prior_left, row_number() over (partition by opportunity_id order"
        f" by entered_at) as n from {STAGE_DURATIONS_TABLE}) s"
        " where n > 1 and (prior_left is null or prior_left > entered_at)"
    )
    return tuple(int(client.execute_sql(q)[0][0]) for q in (open_stints, overlapping))  # type: ignore[return-value]
