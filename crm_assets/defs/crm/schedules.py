"""Schedules: a full reconcile on a cron, whatever the change sensor saw."""

import dagster as dg

from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.settings import OrchestrationSettings


def build_reconcile_schedule(settings: OrchestrationSettings) -> dg.ScheduleDefinition:
    """Daily full sync by default (CRM_RECONCILE_CRON, CRM_TIMEZONE); on when deployed."""
    return dg.ScheduleDefinition(
        name="crm_reconcile_schedule",
        job_name=CRM_SYNC_JOB,
        cron_schedule=settings.reconcile_cron,
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        # Always a full read: only a full sync can see records deleted upstream.
        run_config={"ops": {"crm_sync": {"config": {"mode": "full"}}}},
        description="Full CRM sync, catching changes that leave totals and timestamps unchanged.",
    )
