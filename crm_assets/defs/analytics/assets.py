"""The analytics models as Dagster assets; their SQL lives in `crm_assets.warehouse.models`.

Each model says which CRM columns it reads (column lineage in the UI). When the schema in force
does not declare them, the model is not built: it shows in the UI as a plain spec that says
which columns are missing, instead of failing every run with a SQL binder error.
"""

import logging
from collections.abc import Iterator

import dagster as dg

from crm_assets.defs.crm.translator import asset_key
from crm_assets.source.schema import CrmSchema
from crm_assets.warehouse.models import (
    ACCOUNT_SUMMARY_LINEAGE,
    account_summary_coverage,
    build_account_summary,
    unmet_columns,
)
from crm_assets.warehouse.resource import ANALYTICS_SCHEMA, WAREHOUSE_POOL, WarehouseResource

logger = logging.getLogger(__name__)

ANALYTICS_GROUP = "analytics"
ACCOUNT_SUMMARY = dg.AssetKey([ANALYTICS_SCHEMA, "account_summary"])
ONE_ROW_PER_ACCOUNT = "one_row_per_live_account"
# eager() counts a request or an update of the model as having handled every sync of its tables
# seen in the same evaluation window. A table synced again without the model (a manual sync just
# after the change sensor's run) in the window of the model's request or update was thus lost:
# the model stayed behind its tables until their next change. Here a request or an update
# handles them only when no table updated in that window outside the model's own run; in doubt
# the model rebuilds.
_HANDLED = (
    (
        (dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated())
        & ~dg.AutomationCondition.any_deps_updated()
    )
    | dg.AutomationCondition.initial_evaluation()
).with_label("handled")
# A model rebuilds after its tables sync, never on top of one short of the API (its blocking
# reconciliation check failed).
MODEL_AUTOMATION = (
    dg.AutomationCondition.eager()
    .replace("handled", _HANDLED)
    .with_label("eager (a table synced after the model still counts)")
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
)

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
            "decimal(38,9)",
            description="Sum of open deals priced in the account's currency; 0 if none",
        ),
        dg.TableColumn(
            "open_opportunities_in_other_currencies",
            "bigint",
            description="Open deals priced in another currency (not in open_amount)",
        ),
    ]
)


COLUMN_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        output: [dg.TableColumnDep(asset_key=asset_key(t), column_name=c) for t, c in inputs]
        for output, inputs in ACCOUNT_SUMMARY_LINEAGE.items()
    }
)
_DEPS = [asset_key("account"), asset_key("contact"), asset_key("opportunity")]
_DESCRIPTION = (
    "Per live account: its contacts, open deals and their amount in the account's"
    " currency. Rebuilt in the warehouse after each sync of its tables."
)


def not_built_spec(unmet: list[str], schema: CrmSchema) -> dg.AssetSpec:
    """`analytics/account_summary` as a spec only: the schema in force lacks what it reads."""
    where = schema.path or "the schema file"
    reason = (
        f"Not built: the schema in force ({where}) lacks {', '.join(unmet)}. Map the CRM's"
        " fields to these names under `renames` in the schema file (or declare them), then"
        " reload the code location."
    )
    logger.warning(f"model {ACCOUNT_SUMMARY.to_user_string()}: {reason}")
    return dg.AssetSpec(
        key=ACCOUNT_SUMMARY,
        deps=_DEPS,
        group_name=ANALYTICS_GROUP,
        description=f"{_DESCRIPTION}\n\n{reason}",
        metadata={
            "unmet_columns": dg.MetadataValue.text(", ".join(unmet)),
            "dagster/column_lineage": COLUMN_LINEAGE,
        },
    )


def build_account_summary_asset(
    freshness_policy: dg.FreshnessPolicy | None = None,
    target: WarehouseResource | None = None,
    schema: CrmSchema | None = None,
) -> dg.AssetsDefinition | dg.AssetSpec:
    """`analytics/account_summary`; `target` (the configured warehouse) names its kind and
    table in the definitions, while a run builds it through the `warehouse` resource. With
    `schema` (the one in force) lacking a column it reads, only a spec saying so."""
    target = target or WarehouseResource()
    if schema is not None and (unmet := unmet_columns(ACCOUNT_SUMMARY_LINEAGE, schema)):
        return not_built_spec(unmet, schema)

    @dg.asset(
        key=ACCOUNT_SUMMARY,
        deps=_DEPS,
        group_name=ANALYTICS_GROUP,
        kinds={"sql", target.destination},
        pool=WAREHOUSE_POOL,
        automation_condition=MODEL_AUTOMATION,
        freshness_policy=freshness_policy,
        description=_DESCRIPTION,
        metadata={
            "dagster/table_name": target.table_name("account_summary", ANALYTICS_SCHEMA),
            "dagster/column_schema": COLUMNS,
            "dagster/column_lineage": COLUMN_LINEAGE,
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
                "dagster/column_lineage": COLUMN_LINEAGE,
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
