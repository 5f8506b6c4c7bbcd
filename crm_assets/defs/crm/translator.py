"""How a dlt resource becomes a Dagster asset: the one place that sets keys, group and lineage."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from crm_assets.source.contract import endpoint_path

ASSET_PREFIX = "crm"
API_PREFIX = "crm_api"
GROUP_NAME = "crm"
API_GROUP_NAME = "crm_api"


def asset_key(resource_name: str) -> dg.AssetKey:
    return dg.AssetKey([ASSET_PREFIX, resource_name])


def api_asset_key(resource_name: str) -> dg.AssetKey:
    return dg.AssetKey([API_PREFIX, resource_name])


@dataclass
class CrmTranslator(DagsterDltTranslator):
    """Keys `crm/<resource>` in group `crm`, each fed by the external `crm_api/<resource>`."""

    freshness_policy: dg.FreshnessPolicy | None = None

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        name = data.resource.name
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=asset_key(name),
                deps=[api_asset_key(name)],
                group_name=GROUP_NAME,
                description=f"CRM `{name}` records, merged on `id` from GET {endpoint_path(name)}.",
                freshness_policy=self.freshness_policy,
            )
        )


def api_asset_specs(resource_names: list[str]) -> list[dg.AssetSpec]:
    """The CRM endpoints as external assets, so lineage reads API endpoint -> table."""
    return [
        dg.AssetSpec(
            key=api_asset_key(name),
            group_name=API_GROUP_NAME,
            description=(
                f"GET {endpoint_path(name)} on the CRM REST API (not materialized by Dagster)."
            ),
            kinds={"api"},
        )
        for name in resource_names
    ]
