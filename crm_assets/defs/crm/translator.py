"""How a dlt resource becomes a Dagster asset: the one place that sets keys, group and lineage."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import dagster as dg
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from crm_assets.defs.crm.metadata import column_schema, table_metadata
from crm_assets.source.contract import endpoint_path
from crm_assets.source.history import history_table

ASSET_PREFIX = "crm"
API_PREFIX = "crm_api"
GROUP_NAME = "crm"
API_GROUP_NAME = "crm_api"
# The graph, breadcrumbs and upstream stubs show a key's last part: the endpoint's differs from
# its table's, so "account_endpoint -> account -> account_summary" reads without hovering.
API_SUFFIX = "_endpoint"


def asset_key(resource_name: str) -> dg.AssetKey:
    return dg.AssetKey([ASSET_PREFIX, resource_name])


def api_asset_key(resource_name: str) -> dg.AssetKey:
    return dg.AssetKey([API_PREFIX, f"{resource_name}{API_SUFFIX}"])


def read_keys(resource_name: str, history: Collection[str] = ()) -> list[dg.AssetKey]:
    """The assets one read of a resource writes: its table, and its history when the resource is
    in `history` mode. A run should select them together."""
    history_key = [asset_key(history_table(resource_name))] if resource_name in history else []
    return [asset_key(resource_name), *history_key]


@dataclass
class CrmTranslator(DagsterDltTranslator):
    """Keys `crm/<resource>` in group `crm`, each fed by the external `crm_api/<resource>_endpoint`.

    `table_name` gives the warehouse relation a table lands in (the UI's Storage line); the
    declared columns are known before any load, so the UI lists them from the start.
    """

    freshness_policy: dg.FreshnessPolicy | None = None
    table_name: Callable[[str], str] | None = None

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        name = data.resource.name
        spec = super().get_asset_spec(data)
        table_name = self.table_name(name) if self.table_name is not None else None
        metadata = {**spec.metadata, **table_metadata(table_name, column_schema(name))}
        return spec.replace_attributes(
            key=asset_key(name),
            deps=[api_asset_key(name)],
            group_name=GROUP_NAME,
            description=f"CRM {name} records from GET {endpoint_path(name)}, merged on id.",
            freshness_policy=self.freshness_policy,
            metadata=metadata,
        )
