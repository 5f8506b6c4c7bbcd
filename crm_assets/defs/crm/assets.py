"""The CRM tables as Dagster assets: one subsettable multi-asset over the seed's dlt source.

It is what `@dlt_assets` builds (`build_dlt_asset_specs` + `multi_asset`), plus check specs,
so the sync step can report the checks only it can judge: reconciliation, deletions, rejects.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, build_dlt_asset_specs
from dlt.pipeline.exceptions import PipelineStepFailed

from crm_assets.defs.crm.checks import DeletionMarks, sync_check_results, sync_check_specs
from crm_assets.defs.crm.metadata import column_schema
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.translator import CrmTranslator
from crm_assets.source.contract import crm_resource_names, crm_source
from crm_assets.source.ledger import SyncLedger
from crm_assets.sync.errors import CrmSyncError, describe_sync_failure
from crm_assets.sync.post_load import follow_up_load
from crm_assets.sync.progress import ProgressReporter
from crm_assets.warehouse.resource import (
    DEFAULT_DATASET,
    PIPELINE_NAME,
    WAREHOUSE_POOL,
    WarehouseResource,
)
from crm_assets.warehouse.tables import existing_tables, mark_deleted, row_counts


def _last_load_id(pipeline: dlt.Pipeline) -> str | None:
    trace = pipeline.last_trace
    load_info = trace.last_load_info if trace else None
    return load_info.loads_ids[-1] if load_info and load_info.loads_ids else None


def _finish_sync(
    context: dg.AssetExecutionContext,
    results: list[dg.MaterializeResult],
    pipeline: dlt.Pipeline,
    ledger: SyncLedger,
    loader_file_format: str,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Quarantine, empty tables and deletion marks, then each table's metadata and checks."""
    tables = [r.asset_key.path[-1] for r in results if r.asset_key]
    with pipeline.sql_client() as client:
        missing = set(tables) - existing_tables(client, tables)
    follow_up_load(
        pipeline, ledger.rejections(), sorted(missing), _last_load_id(pipeline), loader_file_format
    )
    now = datetime.now(UTC)
    with pipeline.sql_client() as client:
        for result, table in zip(results, tables, strict=True):
            seen = ledger[table]
            reconciliation = seen.reconcile()
            # Absent ids mean deleted only when the sync provably saw everything the API has.
            if reconciliation.passed:
                marks = DeletionMarks(*mark_deleted(client, table, seen.ids, now))
            else:
                marks = DeletionMarks(None, None)
            rows, live = row_counts(client, table)
            metadata = {
                **(result.metadata or {}),
                "rows_loaded": (result.metadata or {}).get("rows_loaded", dg.MetadataValue.int(0)),
                "dagster/row_count": dg.MetadataValue.int(rows),
                "live_rows": dg.MetadataValue.int(live),
                "records_received": dg.MetadataValue.int(seen.received),
                "records_quarantined": dg.MetadataValue.int(seen.quarantined),
                "values_set_aside": dg.MetadataValue.int(len(seen.set_aside_values)),
                "records_without_id": dg.MetadataValue.int(seen.without_id),
                "api_total": reconciliation.api_total,
                "newly_marked_deleted": marks.newly,
                "dagster/column_schema": column_schema(
                    table, pipeline.default_schema.get_table_columns(table)
                ),
            }
            yield result._replace(metadata=metadata)
            yield from sync_check_results(
                seen, reconciliation, marks, set(context.selected_asset_check_keys)
            )


def build_crm_assets(freshness_policy: dg.FreshnessPolicy | None = None) -> dg.AssetsDefinition:
    """Asset specs come from a placeholder source; every run builds the real one from resources."""
    specs = build_dlt_asset_specs(
        dlt_source=crm_source("http://crm.invalid", "placeholder"),
        dlt_pipeline=dlt.pipeline(
            pipeline_name=PIPELINE_NAME, destination="duckdb", dataset_name=DEFAULT_DATASET
        ),
        dagster_dlt_translator=CrmTranslator(freshness_policy),
    )

    @dg.multi_asset(
        specs=specs,
        check_specs=sync_check_specs(crm_resource_names()),
        name="crm_sync",
        can_subset=True,
        pool=WAREHOUSE_POOL,
    )
    def crm_sync(
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        crm_api: CrmApiResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        pipeline = warehouse.dlt_pipeline(PIPELINE_NAME)
        ledger = SyncLedger()
        try:
            with (
                crm_api.sync_source(ledger) as source,
                ProgressReporter(ledger, context.log.info, crm_api.progress_every_s),
            ):
                results = list(
                    dlt.run(
                        context=context,
                        dlt_source=source,
                        dlt_pipeline=pipeline,
                        loader_file_format=warehouse.loader_file_format,
                    )
                )
            yield from _finish_sync(  # type: ignore[arg-type]
                context, results, pipeline, ledger, warehouse.loader_file_format
            )
        except PipelineStepFailed as failure:
            secrets = [crm_api.resolved_api_key()]
            raise CrmSyncError(
                describe_sync_failure(failure, crm_api.retry_policy, secrets)
            ) from None

    return crm_sync
