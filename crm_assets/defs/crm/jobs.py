"""Jobs: the full CRM sync, the unit that schedules, sensors and `make demo` launch."""

import dagster as dg

from crm_assets.defs.analytics.assets import ANALYTICS_GROUP
from crm_assets.defs.crm.translator import GROUP_NAME

CRM_SYNC_JOB = "crm_sync_job"


def build_crm_sync_job():  # an UnresolvedAssetJobDefinition, a type dagster does not export
    return dg.define_asset_job(
        CRM_SYNC_JOB,
        selection=dg.AssetSelection.groups(GROUP_NAME, ANALYTICS_GROUP),
        description="Syncs every CRM resource (merge on id, checks), then the models on top.",
    )
