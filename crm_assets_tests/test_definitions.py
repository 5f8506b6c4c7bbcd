"""The code location: loads with no env and exposes exactly the promised assets and lineage."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from crm_assets.definitions import defs
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import declared_columns
from crm_assets_tests.conftest import REPO
from crm_sandbox.runs import cli_env

CRM_KEYS = {dg.AssetKey(["crm", name]) for name in ("account", "contact", "lead", "opportunity")}
API_KEYS = {
    dg.AssetKey(["crm_api", f"{name}_endpoint"])
    for name in ("account", "contact", "lead", "opportunity")
}
MODEL_KEY = dg.AssetKey(["analytics", "account_summary"])
CHECK_NAMES = {
    "reconciled_with_api",
    "gone_upstream",
    "no_schema_drift",
    "id_unique_not_null",
    "declared_columns",
}


@pytest.fixture(scope="module")
def loaded() -> dg.Definitions:
    return defs()


def test_asset_keys_are_pinned(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == CRM_KEYS | API_KEYS | {MODEL_KEY}
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert materializable == CRM_KEYS | {MODEL_KEY}


def test_lineage_reads_api_endpoint_then_raw_table_then_model(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    model = graph.get(MODEL_KEY)
    assert model.parent_keys == {
        dg.AssetKey(["crm", n]) for n in ("account", "contact", "opportunity")
    }
    assert model.group_name == "analytics"
    for parent in model.parent_keys:
        endpoint = dg.AssetKey(["crm_api", f"{parent.path[-1]}_endpoint"])
        assert graph.get(parent).parent_keys == {endpoint}


def test_every_crm_asset_has_every_check(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    for key in CRM_KEYS:
        assert {check.name for check in graph.get_check_keys_for_assets({key})} == CHECK_NAMES


def test_each_table_is_in_group_crm_fed_by_its_api_endpoint(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    for name in crm_resource_names():
        node = graph.get(dg.AssetKey(["crm", name]))
        assert node.group_name == "crm"
        endpoint = dg.AssetKey(["crm_api", f"{name}_endpoint"])
        assert node.parent_keys == {endpoint}
        assert node.kinds == {"dlt", "duckdb"}
        assert graph.get(endpoint).group_name == "crm_api"


def test_asset_kinds_name_the_configured_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DESTINATION", "postgres")

    graph = defs().resolve_asset_graph()

    assert graph.get(dg.AssetKey(["crm", "contact"])).kinds == {"dlt", "postgres"}
    assert graph.get(MODEL_KEY).kinds == {"sql", "postgres"}


def test_storage_names_the_qualified_table_on_each_destination(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRM_DUCKDB_PATH", str(tmp_path / "sales.duckdb"))
    graph = defs().resolve_asset_graph()
    assert (
        graph.get(dg.AssetKey(["crm", "lead"])).metadata["dagster/table_name"] == "sales.crm.lead"
    )
    monkeypatch.setenv("CRM_DESTINATION", "postgres")
    monkeypatch.setenv("CRM_POSTGRES_URL", "postgresql://loader:s3cret@db.internal:5432/dwh")

    graph = defs().resolve_asset_graph()

    assert graph.get(dg.AssetKey(["crm", "lead"])).metadata["dagster/table_name"] == "dwh.crm.lead"
    model = graph.get(MODEL_KEY).metadata["dagster/table_name"]
    assert model == "dwh.analytics.account_summary"


def test_the_ui_shows_no_dlt_internals_and_no_raw_markdown(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for key in keys:
        node = graph.get(key)
        assert not [k for k in node.metadata if k.startswith("dagster_dlt/")], key
        assert "`" not in (node.description or ""), key
    for check in graph.asset_check_keys:
        assert "`" not in (graph.get_check_spec(check).description or ""), check
    labels = [key.path[-1] for key in keys]  # what graph nodes and breadcrumbs show
    assert len(labels) == len(set(labels)), labels


def test_the_ui_lists_each_tables_columns_before_any_sync(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    for name in crm_resource_names():
        schema = graph.get(dg.AssetKey(["crm", name])).metadata["dagster/column_schema"]
        declared = [c.name for c in declared_columns(name)]
        assert [c.name for c in schema.columns] == [*declared, "_dlt_load_id", "_dlt_id"], name
    account = graph.get(dg.AssetKey(["crm", "account"])).metadata["dagster/column_schema"]
    columns = {c.name: c for c in account.columns}
    assert (columns["annual_revenue"].type, columns["name"].description) == (
        "decimal(38,9)",
        "Company name",
    )


def test_every_crm_asset_has_the_configured_freshness_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_FRESHNESS_WARN_MINUTES", "45")
    monkeypatch.setenv("CRM_FRESHNESS_FAIL_MINUTES", "120")

    graph = defs().resolve_asset_graph()

    for key in CRM_KEYS:
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), key
        assert policy.fail_window.to_timedelta() == timedelta(minutes=120)
        assert policy.warn_window.to_timedelta() == timedelta(minutes=45)
    assert graph.get(MODEL_KEY).freshness_policy == graph.get(key).freshness_policy
    assert all(graph.get(key).freshness_policy is None for key in API_KEYS)


def _ops(loaded: dg.Definitions) -> dict[str, dg.AssetsDefinition]:
    defs = [*(loaded.assets or []), *(loaded.asset_checks or [])]
    return {a.op.name: a for a in defs if isinstance(a, dg.AssetsDefinition)}


def test_everything_touching_the_warehouse_shares_one_pool(loaded: dg.Definitions) -> None:
    ops = _ops(loaded)
    writers = {"crm_sync", "analytics__account_summary", "crm_table_checks"}
    assert set(ops) == {*writers, "crm_api_endpoints"}
    assert {ops[name].op.pool for name in writers} == {"crm_warehouse"}
    assert ops["crm_api_endpoints"].op.pool is None  # it only asks the API


def test_the_endpoints_are_observable_sources(loaded: dg.Definitions) -> None:
    graph = loaded.resolve_asset_graph()
    assert all(graph.get(key).is_observable for key in API_KEYS)
    assert not any(graph.get(key).is_materializable for key in API_KEYS)


def test_crm_assets_are_one_subsettable_dlt_op(loaded: dg.Definitions) -> None:
    crm_sync = _ops(loaded)["crm_sync"]
    assert crm_sync.can_subset
    assert set(crm_sync.keys) == CRM_KEYS


def test_secrets_come_from_env_vars_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_API_KEY", "never-shown")
    monkeypatch.setenv("CRM_API_BASE_URL", "http://127.0.0.1:1")

    resources = defs().resources or {}

    assert resources["crm_api"].api_key == dg.EnvVar("CRM_API_KEY")
    assert resources["crm_api"].base_url == dg.EnvVar("CRM_API_BASE_URL")
    assert resources["warehouse"].duckdb_path == "data/warehouse.duckdb"


def test_load_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "170MB")
    monkeypatch.setenv("CRM_DUCKDB_MAX_MEMORY_LIMIT", "2GB")
    monkeypatch.setenv("CRM_MAX_REREADS", "5")

    resources = defs().resources or {}

    warehouse = resources["warehouse"]
    assert (warehouse.duckdb_memory_limit, warehouse.duckdb_max_memory_limit) == ("170MB", "2GB")
    assert resources["crm_api"].max_rereads == 5
    monkeypatch.delenv("CRM_DUCKDB_MEMORY_LIMIT")
    assert (defs().resources or {})["warehouse"].duckdb_memory_limit == "40MB"


_IMPORT_PROBE = """
import os, collections.abc, dagster, dlt, dagster_dlt, duckdb, starlette, uvicorn
class Spy(collections.abc.MutableMapping):
    def __init__(self, env): self.env, self.read = env, set()
    def __getitem__(self, key): self.read.add(key); return self.env[key]
    def __contains__(self, key): self.read.add(key); return key in self.env
    def __setitem__(self, key, value): self.env[key] = value
    def __delitem__(self, key): del self.env[key]
    def __iter__(self): return iter(self.env)
    def __len__(self): return len(self.env)
os.environ = spy = Spy(os.environ)
import importlib, pkgutil, crm_assets, crm_sandbox
for package in (crm_assets, crm_sandbox):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print(sorted(k for k in spy.read if k.startswith(("CRM_", "SOURCES__"))))
"""


def test_importing_the_package_reads_no_env_and_writes_no_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "dlt_data"
    env = cli_env(dagster_home=tmp_path) | {"HOME": str(tmp_path), "DLT_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO), "CRM_API_KEY": "k"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_history_mode_adds_each_named_history_table_with_its_check_and_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_HISTORY", "opportunity")

    loaded = defs()

    graph = loaded.resolve_asset_graph()
    history = dg.AssetKey(["crm", "opportunity_history"])
    durations = dg.AssetKey(["analytics", "opportunity_stage_durations"])
    everything = CRM_KEYS | API_KEYS | {MODEL_KEY, history, durations}
    assert set(graph.get_all_asset_keys()) == everything
    assert graph.get(history).parent_keys == {dg.AssetKey(["crm_api", "opportunity_endpoint"])}
    assert graph.get(durations).parent_keys == {history}
    job = loaded.resolve_job_def("crm_sync_job")
    assert {history, durations} <= set(job.asset_layer.selected_asset_keys)
    checks = {key for key in graph.asset_check_keys if key.asset_key == history}
    assert checks == {dg.AssetCheckKey(history, "versions_consistent")}
