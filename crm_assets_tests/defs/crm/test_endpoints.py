"""The endpoints as observable sources: observed on demand, and a table synced after its
endpoint's last observation reads as synced; one behind a newer observation as not."""

import dagster as dg

# Dagster's staleness as the UI computes it; there is no public API for it in 1.13.
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from crm_assets.defs.crm.endpoints import build_endpoint_assets, endpoint_observations
from crm_assets.defs.crm.translator import api_asset_key, asset_key
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.probe import Fingerprint
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, crm_resources
from crm_sandbox import SandboxServer


def _definitions(
    crm_assets_def: dg.AssetsDefinition, sandbox: SandboxServer, warehouse: WarehouseResource
) -> dg.Definitions:
    return dg.Definitions(
        assets=[build_endpoint_assets(crm_resource_names()), crm_assets_def],
        resources=crm_resources(sandbox.base_url, warehouse),
    )


def _run(definitions: dg.Definitions, instance: dg.DagsterInstance, *keys: dg.AssetKey):
    job = definitions.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=list(keys), raise_on_error=False
    )


def test_observing_an_endpoint_records_its_total_and_newest_record_as_its_data_version(
    crm_assets_def: dg.AssetsDefinition, sandbox: SandboxServer, warehouse: WarehouseResource
) -> None:
    definitions = _definitions(crm_assets_def, sandbox, warehouse)
    sandbox.store.insert("lead", {"first_name": "Newest"})
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(definitions, instance, api_asset_key("lead"), api_asset_key("account"))

        assert result.success
        (record,) = instance.fetch_observations(api_asset_key("lead"), limit=5).records
        observed = record.asset_observation
        newest = max(r["updated_at"] for r in sandbox.store.records("lead"))
        assert observed.data_version == f"{sandbox.store.total('lead')} @ {newest}"
        assert observed.metadata["total"].value == sandbox.store.total("lead")
        assert not instance.fetch_observations(api_asset_key("contact"), limit=5).records


def test_an_unreachable_endpoint_fails_the_observation_naming_it_without_the_key(
    crm_assets_def: dg.AssetsDefinition, sandbox: SandboxServer, warehouse: WarehouseResource
) -> None:
    definitions = _definitions(crm_assets_def, sandbox, warehouse)
    sandbox.faults.inject("contact", [401, 401])
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(definitions, instance, api_asset_key("contact"))

        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.message
        assert "probe of 'contact'" in message
        assert "HTTP 401" in message
        assert TEST_KEY not in str(result.all_events)
        assert not instance.fetch_observations(api_asset_key("contact"), limit=5).records


def test_a_table_synced_after_its_endpoint_changed_reads_synced_until_it_changes_again(
    crm_assets_def: dg.AssetsDefinition, sandbox: SandboxServer, warehouse: WarehouseResource
) -> None:
    name = "account"
    definitions = _definitions(crm_assets_def, sandbox, warehouse)
    assets = list(definitions.assets or [])
    with dg.DagsterInstance.ephemeral() as instance:

        def observe(total: int, newest: str) -> None:
            seen = {name: Fingerprint(total, newest)}
            for observation in endpoint_observations(seen, [name]):
                instance.report_runless_asset_event(observation)

        def status() -> StaleStatus:
            return get_stale_status_resolver(instance, assets).get_status(asset_key(name))

        observe(250, "2026-12-01T09:00:00Z")  # what the change sensor records
        assert _run(definitions, instance, asset_key(name)).success
        synced = status()
        observe(251, "2026-12-01T10:00:00Z")
        behind = status()
        assert _run(definitions, instance, asset_key(name)).success

        assert (synced, behind, status()) == (
            StaleStatus.FRESH,
            StaleStatus.STALE,
            StaleStatus.FRESH,
        )
