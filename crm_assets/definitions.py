"""Assembles the code location; built lazily so importing this module reads no env and no files."""

from __future__ import annotations

import os

import dagster as dg
from dagster_dlt import DagsterDltResource

from crm_assets.defs.analytics.assets import build_account_summary_asset
from crm_assets.defs.analytics.sensors import build_analytics_automation_sensor
from crm_assets.defs.analytics.stage_durations import build_stage_durations_asset
from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.defs.crm.checks import build_table_checks
from crm_assets.defs.crm.endpoints import build_endpoint_assets
from crm_assets.defs.crm.jobs import build_crm_sync_job
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.schedules import build_reconcile_schedule
from crm_assets.defs.crm.sensors import build_crm_change_sensor
from crm_assets.settings import OrchestrationSettings
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import crm_schema
from crm_assets.warehouse.resource import DEFAULT_DUCKDB_PATH, WarehouseResource


def _env_or(name: str, default: str | None) -> dg.EnvVar | str | None:
    """`EnvVar` when set, so the UI shows the variable's name and never its value."""
    return dg.EnvVar(name) if name in os.environ else default


def _duckdb_memory() -> dict[str, str]:
    """DuckDB's memory settings for loads that the environment sets (else the resource's)."""
    names = {
        "duckdb_memory_limit": "CRM_DUCKDB_MEMORY_LIMIT",
        "duckdb_max_memory_limit": "CRM_DUCKDB_MAX_MEMORY_LIMIT",
    }
    return {field: os.environ[env] for field, env in names.items() if os.environ.get(env)}


@dg.definitions
def defs() -> dg.Definitions:
    settings = OrchestrationSettings.from_env(os.environ)
    # The warehouse with the values read, only to name its tables and kind in the specs.
    named = WarehouseResource.from_env(os.environ)
    freshness = dg.FreshnessPolicy.time_window(
        fail_window=settings.freshness_fail, warn_window=settings.freshness_warn
    )
    models = [build_account_summary_asset(freshness, named, crm_schema())]
    if "opportunity" in settings.history:
        models.append(build_stage_durations_asset(freshness, named))
    built = [m for m in models if isinstance(m, dg.AssetsDefinition)]
    return dg.Definitions(
        assets=[
            build_endpoint_assets(crm_resource_names()),
            build_crm_assets(freshness, named, settings.history),
            *models,
        ],
        asset_checks=[build_table_checks(crm_resource_names(), settings.history)],
        jobs=[build_crm_sync_job(built)],
        # One process per run: the steps share the warehouse's one writer anyway, and a step
        # process costs an import of Dagster, dlt and these definitions (~3 s each).
        executor=dg.in_process_executor,
        schedules=[build_reconcile_schedule(settings)],
        sensors=[
            build_crm_change_sensor(settings, models=built),
            *([build_analytics_automation_sensor(settings.sensor_interval_s)] if built else []),
        ],
        resources={
            "dlt": DagsterDltResource(),
            "crm_api": CrmApiResource(
                base_url=_env_or("CRM_API_BASE_URL", None),
                api_key=_env_or("CRM_API_KEY", None),
                schema_enforcement=os.environ.get("CRM_SCHEMA_ENFORCEMENT") or "keep_rows",
                incremental_param=os.environ.get("CRM_INCREMENTAL_PARAM") or None,
                max_rereads=int(os.environ.get("CRM_MAX_REREADS") or 2),
            ),
            "warehouse": WarehouseResource(
                destination=named.destination,
                dataset_name=named.dataset_name,
                duckdb_path=_env_or("CRM_DUCKDB_PATH", DEFAULT_DUCKDB_PATH),
                **_duckdb_memory(),
                postgres_url=_env_or("CRM_POSTGRES_URL", None),
            ),
        },
    )
