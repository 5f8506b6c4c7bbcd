"""The CRM tables as Dagster assets: one subsettable `@dlt_assets` over the seed's dlt source."""

from collections.abc import Iterator

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.pipeline.exceptions import PipelineStepFailed

from crm_assets.contract import crm_source
from crm_assets.errors import CrmSyncError, describe_sync_failure
from crm_assets.resources import (
    DEFAULT_DATASET,
    WAREHOUSE_POOL,
    CrmApiResource,
    WarehouseResource,
)
from crm_assets.translator import CrmTranslator

PIPELINE_NAME = "crm_api"
# Parquet loading: 50k records took 5.1 s / 252 MB here, against 14.5 s / 2.2 GB with insert_values.
LOADER_FILE_FORMAT = "parquet"


def _table_row_counts(pipeline: dlt.Pipeline, tables: list[str]) -> dict[str, int]:
    """Rows now in each table that exists (a resource that never had records has none)."""
    with pipeline.sql_client() as client:
        existing = {
            row[0]
            for row in client.execute_sql(
                "select table_name from information_schema.tables where table_schema = %s",
                client.dataset_name,
            )
        }
        return {
            table: client.execute_sql(
                f"select count(*) from {client.make_qualified_table_name(table)}"
            )[0][0]
            for table in tables
            if table in existing
        }


def _with_counts(
    events: Iterator[dg.MaterializeResult], pipeline: dlt.Pipeline
) -> Iterator[dg.MaterializeResult]:
    """Adds `rows_loaded` (0 too, which dagster-dlt omits) and the table's row count."""
    results = list(events)
    counts = _table_row_counts(pipeline, [r.asset_key.path[-1] for r in results if r.asset_key])
    for result in results:
        metadata = dict(result.metadata or {})
        metadata.setdefault("rows_loaded", dg.MetadataValue.int(0))
        table = result.asset_key.path[-1] if result.asset_key else ""
        metadata["dagster/row_count"] = dg.MetadataValue.int(counts.get(table, 0))
        yield result._replace(metadata=metadata)


def build_crm_assets(freshness_policy: dg.FreshnessPolicy | None = None) -> dg.AssetsDefinition:
    """Asset specs come from a placeholder source; every run builds the real one from resources."""

    @dlt_assets(
        dlt_source=crm_source("http://crm.invalid", "placeholder"),
        dlt_pipeline=dlt.pipeline(
            pipeline_name=PIPELINE_NAME, destination="duckdb", dataset_name=DEFAULT_DATASET
        ),
        name="crm_sync",
        dagster_dlt_translator=CrmTranslator(freshness_policy),
        pool=WAREHOUSE_POOL,
    )
    def crm_sync(
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        crm_api: CrmApiResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult]:
        pipeline = warehouse.dlt_pipeline(PIPELINE_NAME)
        try:
            events = dlt.run(
                context=context,
                dlt_source=crm_api.build_source(),
                dlt_pipeline=pipeline,
                loader_file_format=LOADER_FILE_FORMAT,
            )
            yield from _with_counts(events, pipeline)
        except PipelineStepFailed as failure:
            secrets = [crm_api.resolved_api_key()]
            raise CrmSyncError(
                describe_sync_failure(failure, crm_api.retry_policy, secrets)
            ) from None

    return crm_sync
