"""Automation for the analytics models: rebuild them once the CRM tables they read have synced."""

import dagster as dg

from crm_assets.defs.analytics.assets import ANALYTICS_GROUP


def build_analytics_automation_sensor(interval_s: int) -> dg.AutomationConditionSensorDefinition:
    """Runs the models' eager conditions, on by default: a sync of any parent rebuilds them.

    Dagster's own default automation sensor starts stopped, which would leave the models stale
    after every sensor-driven sync.
    """
    return dg.AutomationConditionSensorDefinition(
        "analytics_automation_sensor",
        target=dg.AssetSelection.groups(ANALYTICS_GROUP),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_s,
        description="Rebuilds the analytics models once the CRM tables they read have synced.",
    )
