"""The CRM tables as Dagster assets: one subsettable multi-asset over the seed's dlt source.

It is what `@dlt_assets` builds (the translator's specs + `multi_asset`), plus check specs,
so the sync step can report the checks only it can judge: reconciliation, deletions, rejects.
"""

import functools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from dagster_dlt import DagsterDltResource
from dagster_dlt.translator import DltResourceTranslatorData
from dlt import Pipeline
from dlt import pipeline as dlt_pipeline
from dlt.common.schema import Schema
from dlt.destinations.sql_client import SqlClientBase
from dlt.extract import DltResource
from dlt.pipeline.exceptions import PipelineStepFailed
from pydantic import Field

from crm_assets.defs.crm.checks import (
    GONE_UPSTREAM,
    DeletionMarks,
    gone_upstream_not_checked,
    sync_check_results,
    sync_check_specs,
)
from crm_assets.defs.crm.endpoints import probe_endpoints
from crm_assets.defs.crm.metadata import column_schema, history_column_schema, table_metadata
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.translator import GROUP_NAME, CrmTranslator, api_asset_key, asset_key
from crm_assets.source.batches import QUARANTINE_TABLE
from crm_assets.source.contract import crm_resource_names, crm_source
from crm_assets.source.history import history_table
from crm_assets.source.ledger import SyncLedger
from crm_assets.source.probe import Fingerprint
from crm_assets.sync.errors import CrmSyncError, describe_sync_failure
from crm_assets.sync.progress import ProgressReporter
from crm_assets.sync.redaction import leaked_secret, redacted_logs
from crm_assets.warehouse.resource import (
    PIPELINE_NAME,
    WAREHOUSE_POOL,
    WarehouseResource,
)
from crm_assets.warehouse.tables import (
    close_deleted_versions,
    drop_load_rows,
    drop_unfinished,
    landed_ids,
    mark_deleted,
    newest,
    row_counts,
    version_counts,
)


def _last_load_id(pipeline: Pipeline) -> str | None:
    trace = pipeline.last_trace
    load_info = trace.last_load_info if trace else None
    return load_info.loads_ids[-1] if load_info and load_info.loads_ids else None


class CrmSyncConfig(dg.Config):
    """Launchpad config of a sync."""

    mode: Literal["auto", "full", "incremental"] = Field(
        default="auto",
        description=(
            "full: read every record, mark deletions; incremental: only records changed since"
            " the last sync (needs incremental_param on crm_api); auto: incremental when"
            " configured. crm_reconcile_schedule runs full."
        ),
    )


def _api_totals(crm_api: CrmApiResource, tables: list[str]) -> dict[str, int | None]:
    """Each resource's unfiltered total, probed after an incremental sync (None: probe failed)."""
    seen = probe_endpoints(crm_api, tables, params={})
    return {t: s.total if isinstance(s, Fingerprint) else None for t, s in seen.items()}


@dataclass
class _Read:
    """A table's last read in this sync: dagster-dlt's result, its load, why it was re-read."""

    result: dg.MaterializeResult
    load_id: str | None
    rereads: list[str] = field(default_factory=list)


def _finish_sync(
    context: dg.AssetExecutionContext,
    client: SqlClientBase,
    reads: dict[str, _Read],
    pipeline: Pipeline,
    ledger: SyncLedger,
    api_totals: dict[str, int | None] | None,
    table_name: Callable[[str], str],
    history: Collection[str] = (),
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Deletion marks, then each table's metadata and checks (quarantine rows and empty tables
    came in the sync's own load); the deleted records' versions closed in the `history` tables.

    `api_totals` (unfiltered) marks an incremental sync: it saw only changed records, so it
    marks no deletions and reconciles the table's live rows with the API's total instead.
    """
    now = datetime.now(UTC)
    if dropped := drop_unfinished(client, QUARANTINE_TABLE, list(reads)):
        context.log.info(f"removed {dropped} quarantine rows of a load that did not finish")
    for table, read in reads.items():
        seen = ledger[table]
        reconciliation = seen.reconcile(landed_ids(client, table, read.load_id))
        # Absent ids mean deleted only when the sync provably saw everything the API has.
        if reconciliation.passed and api_totals is None and read.load_id is not None:
            marks = DeletionMarks(*mark_deleted(client, table, read.load_id, now))
        else:
            marks = DeletionMarks(None, None)
        rows, live = row_counts(client, table)
        if api_totals is not None:
            reconciliation = reconciliation.after_incremental(live, api_totals.get(table))
        if read.rereads:
            reconciliation = reconciliation.after_rereads(read.rereads)
        columns = column_schema(table, pipeline.default_schema.get_table_columns(table))
        metadata = {
            # dagster-dlt's own entries (load-job JSON with local paths, timestamps, the
            # destination's class) say nothing a user acts on: only its row count stays.
            "rows_loaded": (read.result.metadata or {}).get("rows_loaded", dg.MetadataValue.int(0)),
            **table_metadata(table_name(table), columns, row_count=rows),
            "live_rows": dg.MetadataValue.int(live),
            "records_received": dg.MetadataValue.int(seen.received),
            "records_quarantined": dg.MetadataValue.int(seen.withheld),
            "values_set_aside": dg.MetadataValue.int(seen.values_set_aside),
            "records_without_id": dg.MetadataValue.int(seen.without_id),
            "api_total": reconciliation.api_total,
            "sync_mode": reconciliation.mode,
            "rereads": dg.MetadataValue.int(len(read.rereads)),
            "newly_marked_deleted": marks.newly,
            "dlt_load_id": dg.MetadataValue.text(read.load_id or "none: nothing loaded"),
        }
        if read.rereads:
            metadata["reread_because"] = dg.MetadataValue.text("; ".join(read.rereads))
        yield dg.MaterializeResult(asset_key=read.result.asset_key, metadata=metadata)
        if table in history:
            closed = close_deleted_versions(client, table, now) if marks.newly is not None else 0
            schema = pipeline.default_schema
            yield _history_result(client, schema, table, read.load_id, closed, table_name)
        if reason := gone_upstream_not_checked(reconciliation, marks):
            context.log.info(f"{GONE_UPSTREAM} on crm/{table} not evaluated: {reason}")
        yield from sync_check_results(
            seen, reconciliation, marks, set(context.selected_asset_check_keys)
        )


def _history_result(
    client: SqlClientBase,
    schema: Schema,
    table: str,
    load_id: str | None,
    closed: int,
    table_name: Callable[[str], str],
) -> dg.MaterializeResult:
    versions, current = version_counts(client, table)
    history = history_table(table)
    columns = history_column_schema(table, schema.get_table_columns(history))
    return dg.MaterializeResult(
        asset_key=asset_key(history),
        metadata={
            **table_metadata(table_name(history), columns, row_count=versions),
            "current_versions": dg.MetadataValue.int(current),
            "closed_as_deleted": dg.MetadataValue.int(closed),
            "dlt_load_id": dg.MetadataValue.text(load_id or "none: nothing loaded"),
        },
    )


def _shifted(
    client: SqlClientBase, ledger: SyncLedger, reads: dict[str, _Read], tables: list[str]
) -> dict[str, str]:
    """The tables of this read whose API list moved under it, and why (see `shifted`)."""
    return {
        table: reason
        for table in tables
        if (reason := ledger[table].shifted(landed_ids(client, table, reads[table].load_id)))
    }


def _history_to_write(context: dg.AssetExecutionContext, configured: Collection[str]) -> list[str]:
    """The resources whose history this run writes: those whose history asset it selects. One
    read writes a table and its history, so a history selected alone fails the run, and a table
    in history mode selected alone is warned of (its read's versions are not kept)."""
    keys = context.selected_asset_keys
    history = [n for n in crm_resource_names() if asset_key(history_table(n)) in keys]
    if alone := [n for n in history if asset_key(n) not in keys]:
        raise CrmSyncError(
            f"crm/{history_table(alone[0])} is written by the sync of crm/{alone[0]}: select both"
        )
    if unkept := [n for n in configured if asset_key(n) in keys and n not in history]:
        context.log.warning(
            f"history mode is on, but this run does not select"
            f" {', '.join(f'crm/{history_table(n)}' for n in unkept)}: the versions this read"
            " sees are not kept (select group crm, or both assets)"
        )
    return history


def _sync(
    pipeline: Pipeline,
    context: dg.AssetExecutionContext,
    config: CrmSyncConfig,
    dlt: DagsterDltResource,
    crm_api: CrmApiResource,
    warehouse: WarehouseResource,
    translator: CrmTranslator,
    configured_history: Collection[str],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One sync through `pipeline`: read the API through dlt into the warehouse, again for a
    resource whose list moved under the read (up to `max_rereads`), then marks, metadata,
    checks."""
    ledger = SyncLedger()
    keys = context.selected_asset_keys
    selected = [n for n in crm_resource_names() if asset_key(n) in keys]
    history = _history_to_write(context, configured_history)
    incremental = config.mode != "full" and crm_api.is_incremental
    if config.mode == "incremental" and not incremental:
        context.log.warning("mode incremental, but crm_api has no incremental_param: full")
    since = None
    if incremental:
        with pipeline.sql_client() as client:
            since = {
                name: newest(client, name, crm_api.cursor_field) for name in crm_resource_names()
            }
        resume = ", ".join(
            f"{n} {v.isoformat() if v else 'from the start'}" for n, v in since.items()
        )
        context.log.info(f"incremental sync, {crm_api.cursor_field} at or after: {resume}")
    reads: dict[str, _Read] = {}
    names = selected
    for attempt in range(crm_api.max_rereads + 1):
        with (
            crm_api.sync_source(ledger, since, names, warehouse.refuses_nul, history) as source,
            ProgressReporter(ledger, context.log.info, crm_api.progress_every_s),
        ):
            results = list(
                dlt.run(
                    context=context,
                    dlt_source=source.with_resources(*names) if attempt else source,
                    dlt_pipeline=pipeline,
                    dagster_dlt_translator=translator,
                    loader_file_format=warehouse.file_format,
                )
            )
        load_id = _last_load_id(pipeline)
        tables = [r.asset_key.path[-1] for r in results if r.asset_key]
        for table, result in zip(tables, results, strict=True):
            earlier = reads[table].rereads if table in reads else []
            reads[table] = _Read(result, load_id, earlier)  # type: ignore[arg-type]
        with pipeline.sql_client() as client:  # one connection for the check and the finish
            last = attempt == crm_api.max_rereads
            shifted = {} if last else _shifted(client, ledger, reads, tables)
            if not shifted:
                totals = _api_totals(crm_api, list(reads)) if incremental else None
                yield from _finish_sync(
                    context, client, reads, pipeline, ledger, totals, warehouse.table_name, history
                )
                return
            for table, reason in shifted.items():
                context.log.warning(
                    f"reading crm/{table} again ({attempt + 1} of {crm_api.max_rereads}):"
                    f" {reason}; offset paging skips or repeats records when the list changes"
                    " mid-read"
                )
                reads[table].rereads.append(reason)
                if load_id:  # the re-read sets aside again what this read set aside
                    drop_load_rows(client, QUARANTINE_TABLE, table, load_id)
                ledger.reset(table)
        names = list(shifted)


@functools.cache
def _placeholder_resources(names: tuple[str, ...]) -> tuple[DltResource, ...]:
    """The source's resources `names`, for the translator to name and describe: built once per
    process, as Dagster loads the definitions several times per run. Their hints do not reach
    the specs (the declared columns come from the schema file, read on each load)."""
    resources = crm_source("http://crm.invalid", "placeholder").selected_resources
    return tuple(resources[name] for name in names)


def _history_spec(name: str, translator: CrmTranslator, target: WarehouseResource) -> dg.AssetSpec:
    """`crm/<name>_history`: every version of `crm/<name>`'s records, written by its sync."""
    table = history_table(name)
    return dg.AssetSpec(
        key=asset_key(table),
        deps=[api_asset_key(name)],
        group_name=GROUP_NAME,
        description=(
            f"Every version of the CRM {name} records (dlt scd2 on id): valid_from, valid_to"
            f" (NULL while current). Written in the same load as crm/{name}."
        ),
        kinds={"dlt", target.destination},
        freshness_policy=translator.freshness_policy,
        metadata=table_metadata(target.table_name(table), history_column_schema(name)),
    )


def build_crm_assets(
    freshness_policy: dg.FreshnessPolicy | None = None,
    target: WarehouseResource | None = None,
    history: Collection[str] = (),
) -> dg.AssetsDefinition:
    """Asset specs come from a placeholder source; every run builds the real one from resources.

    `history`: the resources that also keep every version, in `crm/<name>_history`.

    `target` (the configured warehouse) names the kind the UI shows next to `dlt` and the table
    each asset is stored in; a run loads through the `warehouse` resource.
    """
    target = target or WarehouseResource()
    translator = CrmTranslator(freshness_policy, target.table_name)
    placeholder = dlt_pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=target.destination,
        dataset_name=target.dataset_name,
    )
    # The translator itself rather than `build_dlt_asset_specs`, which adds the source, pipeline
    # and translator as metadata for `dlt.run` to find (the UI shows "(unserializable)"): our
    # run hands them over itself.
    specs = [
        translator.get_asset_spec(
            DltResourceTranslatorData(resource=resource, pipeline=placeholder)
        )
        for resource in _placeholder_resources(tuple(crm_resource_names()))
    ]

    specs += [_history_spec(name, translator, target) for name in history]

    @dg.multi_asset(
        specs=specs,
        check_specs=sync_check_specs(crm_resource_names()),
        name="crm_sync",
        can_subset=True,
        pool=WAREHOUSE_POOL,
    )
    def crm_sync(
        context: dg.AssetExecutionContext,
        config: CrmSyncConfig,
        dlt: DagsterDltResource,
        crm_api: CrmApiResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        secrets = [crm_api.resolved_api_key(), *warehouse.secrets()]
        problem = None
        with redacted_logs(secrets):
            try:
                with warehouse.open_pipeline(PIPELINE_NAME, context.run.run_id) as pipeline:
                    yield from _sync(
                        pipeline, context, config, dlt, crm_api, warehouse, translator, history
                    )
            except PipelineStepFailed as failure:
                problem = describe_sync_failure(failure, crm_api.retry_policy, secrets)
            except Exception as error:
                # Broad on purpose: any error (dlt's, a driver's, ours) may quote the API key or
                # the warehouse password; one that quotes neither is re-raised as it is.
                problem = leaked_secret(error, secrets)
                if problem is None:
                    raise
        if problem is not None:
            # Raised here, not in the handler: no chained original can carry the key along.
            raise CrmSyncError(problem)

    return crm_sync
