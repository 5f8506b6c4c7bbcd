"""Jobs: the full CRM sync, the unit that schedules, sensors and `make demo` launch."""

from collections.abc import Sequence

import dagster as dg

from crm_assets.defs.crm.translator import GROUP_NAME

CRM_SYNC_JOB = "crm_sync_job"


def build_crm_sync_job(models: Sequence[dg.AssetsDefinition] = ()):  # type: ignore[no-untyped-def]
    """The CRM group, then the `models` that are built (one the schema cannot feed is not).

    Returns an UnresolvedAssetJobDefinition, a type dagster does not export.
    """
    return dg.define_asset_job(
        CRM_SYNC_JOB,
        selection=dg.AssetSelection.groups(GROUP_NAME) | dg.AssetSelection.assets(*models),
        description="Syncs every CRM resource (merge on id, checks), then the models on top.",
    )
