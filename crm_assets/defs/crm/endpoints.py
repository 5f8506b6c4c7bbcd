"""The CRM API's endpoints as observable source assets: lineage reads endpoint -> table, and
Dagster tells a table synced with its endpoint from one behind it.

An endpoint's data version is what its probe saw, "<total> @ <newest updated_at>". The change
sensor records one on each change it sees; "Observe sources" in the UI (or a run of these
assets) probes on demand. Dagster compares a table's sync with its endpoint's latest data version
only for observable sources: on a plain external asset it marks every table "Unsynced".
"""

import warnings
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg

from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.translator import API_GROUP_NAME, API_PREFIX, API_SUFFIX, api_asset_key
from crm_assets.source.contract import endpoint_path
from crm_assets.source.http import PROBE_RETRY_POLICY, build_session
from crm_assets.source.probe import Fingerprint, ProbeError, probe
from crm_assets.sync.redaction import redacted_logs

# Dagster's tag for an event's data version (its name in the UI's "Data version" field).
DATA_VERSION_TAG = "dagster/data_version"


def data_version(seen: Fingerprint) -> str:
    return f"{seen.total} @ {seen.newest_updated_at or '-'}"


def _metadata(seen: Fingerprint) -> dict[str, dg.MetadataValue]:
    return {
        "total": dg.MetadataValue.int(seen.total),
        "newest_updated_at": dg.MetadataValue.text(seen.newest_updated_at or "not sorted"),
    }


def endpoint_observations(
    probes: Mapping[str, Fingerprint | ProbeError], changed: Sequence[str]
) -> list[dg.AssetObservation]:
    """What the probes of the `changed` resources saw, on `crm_api/<name>_endpoint`: the API
    side's state since it last changed. An endpoint is observed on its first tick and when its
    fingerprint changes, not on every tick (thousands of identical events a day say nothing the
    sensor's tick history does not). A failed probe says nothing."""
    return [
        dg.AssetObservation(
            asset_key=api_asset_key(name),
            metadata=_metadata(seen),
            tags={DATA_VERSION_TAG: data_version(seen)},
        )
        for name, seen in probes.items()
        if name in changed and isinstance(seen, Fingerprint)
    ]


def probe_endpoints(
    crm_api: CrmApiResource, names: Sequence[str], params: Mapping[str, str] | None = None
) -> dict[str, Fingerprint | ProbeError]:
    """One request per resource (limit=1, newest first unless `params` says otherwise): what
    each endpoint holds, or why its probe failed (never raised: one failure blocks no other)."""
    session = build_session(crm_api.timeout_s, PROBE_RETRY_POLICY)
    base_url, api_key = crm_api.resolved_base_url(), crm_api.resolved_api_key()
    query = crm_api.newest_first_params if params is None else params
    seen: dict[str, Fingerprint | ProbeError] = {}
    with redacted_logs([api_key]):  # HTTP debug logging would print each probe's URL
        for name in names:
            try:
                seen[name] = probe(session, base_url, api_key, name, query, crm_api.timeout_s)
            except ProbeError as error:  # names the resource, never the key or the query
                seen[name] = error
    return seen


def api_asset_specs(resource_names: list[str]) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=api_asset_key(name),
            group_name=API_GROUP_NAME,
            description=f"GET {endpoint_path(name)} on the CRM REST API (read by the sync).",
            kinds={"api"},
        )
        for name in resource_names
    ]


def _resource_name(key: dg.AssetKey) -> str:
    assert key.path[0] == API_PREFIX
    return key.path[-1].removesuffix(API_SUFFIX)


def build_endpoint_assets(resource_names: list[str]) -> dg.AssetsDefinition:
    """One observable source asset per endpoint, observed together or one by one."""
    # Observable sources are Dagster's way to version an external asset; still "beta" in 1.13,
    # whose warning would print on every load of the definitions.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        observable = dg.multi_observable_source_asset(
            specs=api_asset_specs(resource_names),
            name="crm_api_endpoints",
            can_subset=True,
            required_resource_keys={"crm_api"},
        )

    @observable
    def crm_api_endpoints(context: dg.AssetExecutionContext) -> Iterator[dg.ObserveResult]:
        keys = {_resource_name(key): key for key in context.selected_asset_keys}
        seen = probe_endpoints(context.resources.crm_api, sorted(keys))
        failures = [str(s) for s in seen.values() if isinstance(s, ProbeError)]
        for name, fingerprint in seen.items():
            if isinstance(fingerprint, Fingerprint):
                yield dg.ObserveResult(
                    asset_key=keys[name],
                    metadata=_metadata(fingerprint),
                    data_version=dg.DataVersion(data_version(fingerprint)),
                )
        if failures:
            raise dg.Failure("; ".join(failures))

    return crm_api_endpoints
