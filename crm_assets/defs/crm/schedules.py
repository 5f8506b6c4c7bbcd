"""Schedules: a full reconcile on a cron, whatever the change sensor saw."""

from collections.abc import Iterator

import dagster as dg

from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.defs.crm.translator import read_keys
from crm_assets.settings import OrchestrationSettings
from crm_assets.source.contract import crm_resource_names

RECONCILE_SCHEDULE = "crm_reconcile_schedule"
# Always a full read: only a full sync can see records deleted upstream.
_FULL = {"ops": {"crm_sync": {"config": {"mode": "full"}}}}


def build_reconcile_schedule(settings: OrchestrationSettings) -> dg.ScheduleDefinition:
    """Daily full sync by default (CRM_RECONCILE_CRON, CRM_TIMEZONE); on when deployed.

    With `run_per_resource`, one run per CRM table (the models follow through their automation
    sensor), so each can run on its own worker.
    """
    description = "Full CRM sync, catching changes that leave totals and timestamps unchanged."
    common = {
        "name": RECONCILE_SCHEDULE,
        "job_name": CRM_SYNC_JOB,
        "cron_schedule": settings.reconcile_cron,
        "execution_timezone": settings.timezone,
        "default_status": dg.DefaultScheduleStatus.RUNNING,
        "description": description,
    }
    if not settings.run_per_resource:
        return dg.ScheduleDefinition(run_config=_FULL, **common)

    def one_run_per_table(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        when = context.scheduled_execution_time
        for name in crm_resource_names():
            yield dg.RunRequest(
                run_key=f"reconcile-{when.isoformat() if when else ''}-{name}",
                run_config=_FULL,
                asset_selection=read_keys(name, settings.history),
            )

    return dg.ScheduleDefinition(execution_fn=one_run_per_table, **common)
