"""`analytics/opportunity_stage_durations`: how long each opportunity sat in each stage, from
its history (history mode on `opportunity`); the SQL is in `crm_assets.warehouse.models`."""

from collections.abc import Iterator

import dagster as dg

from crm_assets.defs.analytics.assets import ANALYTICS_GROUP, MODEL_AUTOMATION
from crm_assets.defs.crm.translator import asset_key
from crm_assets.source.history import history_table
from crm_assets.warehouse.models import build_stage_durations, stage_duration_problems
from crm_assets.warehouse.resource import ANALYTICS_SCHEMA, WAREHOUSE_POOL, WarehouseResource

STAGE_DURATIONS = dg.AssetKey([ANALYTICS_SCHEMA, "opportunity_stage_durations"])
STINTS_PARTITION_HISTORY = "stints_partition_history"
_HISTORY = asset_key(history_table("opportunity"))

COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("opportunity_id", "bigint", description="The opportunity (the CRM's id)"),
        dg.TableColumn("stint_number", "bigint", description="1 for its first stage, and on"),
        dg.TableColumn("stage", "text", description="The stage it was in"),
        dg.TableColumn("entered_at", "timestamp with time zone", description="First sync in it"),
        dg.TableColumn(
            "left_at",
            "timestamp with time zone",
            description="The sync that saw it leave (another stage, or deleted); NULL: still in it",
        ),
        dg.TableColumn(
            "hours_in_stage", "double", description="left_at - entered_at in hours; NULL: open"
        ),
    ]
)


def build_stage_durations_asset(
    freshness_policy: dg.FreshnessPolicy | None = None, target: WarehouseResource | None = None
) -> dg.AssetsDefinition:
    """The model; `target` names its kind and table in the definitions."""
    target = target or WarehouseResource()

    @dg.asset(
        key=STAGE_DURATIONS,
        deps=[_HISTORY],
        group_name=ANALYTICS_GROUP,
        kinds={"sql", target.destination},
        pool=WAREHOUSE_POOL,
        automation_condition=MODEL_AUTOMATION,
        freshness_policy=freshness_policy,
        description=(
            "Per opportunity and stage: when it entered and left (time in stage), computed in"
            " the warehouse from crm/opportunity_history."
        ),
        metadata={
            "dagster/table_name": target.table_name(STAGE_DURATIONS.path[-1], ANALYTICS_SCHEMA),
            "dagster/column_schema": COLUMNS,
        },
        check_specs=[
            dg.AssetCheckSpec(
                STINTS_PARTITION_HISTORY,
                asset=STAGE_DURATIONS,
                description=(
                    "One open stint per opportunity with a current version, and no stint"
                    " overlapping the one before"
                ),
            )
        ],
    )
    def opportunity_stage_durations(
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with warehouse.sql_client() as client:
            rows = build_stage_durations(client)
            unmatched, overlapping = stage_duration_problems(client)
        yield dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(rows)})
        yield dg.AssetCheckResult(
            check_name=STINTS_PARTITION_HISTORY,
            passed=unmatched == overlapping == 0,
            description=(
                f"{unmatched} opportunities without exactly one open stint, {overlapping}"
                " overlapping stints"
            ),
            metadata={"unmatched": unmatched, "overlapping": overlapping},
        )

    return opportunity_stage_durations
