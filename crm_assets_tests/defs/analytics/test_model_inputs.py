"""Models say which CRM columns they read; a schema that lacks them leaves the model out of
the location and the job, saying which columns, instead of failing runs mid-way."""

import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml

from crm_assets.definitions import defs
from crm_assets.defs.analytics.assets import ACCOUNT_SUMMARY
from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.source.schema import SCHEMA_FILE, declared_columns, load_schema
from crm_assets.warehouse.models import ACCOUNT_SUMMARY_LINEAGE, unmet_columns
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, inferred_schema
from crm_assets_tests.support import failure_message
from crm_sandbox import dialects

# What the CRM of the report lacks (the sandbox's fields the model reads among them).
ABSENT = ("currency", "is_closed", "account_id", "stage")


def _schema_without(tmp_path: Path, drop: dict[str, list[str]], retype: dict | None = None) -> Path:
    document = yaml.safe_load(SCHEMA_FILE.read_text())
    for table, columns in drop.items():
        for column in columns:
            del document["tables"][table]["columns"][column]
    for (table, column), data_type in (retype or {}).items():
        document["tables"][table]["columns"][column]["data_type"] = data_type
    path = tmp_path / "crm.schema.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _job_assets(loaded: dg.Definitions) -> set[dg.AssetKey]:
    return set(loaded.resolve_job_def(CRM_SYNC_JOB).asset_layer.selected_asset_keys)


def test_the_model_shows_column_lineage_from_declared_columns() -> None:
    loaded = defs()
    spec = loaded.resolve_assets_def(ACCOUNT_SUMMARY).specs_by_key[ACCOUNT_SUMMARY]
    lineage = spec.metadata["dagster/column_lineage"]

    assert set(lineage.deps_by_column) == {"account_id", "account_name", "status", "currency",
        "contact_count", "open_opportunity_count", "open_amount",
        "open_opportunities_in_other_currencies"}  # fmt: skip
    for deps in lineage.deps_by_column.values():
        for dep in deps:
            declared = {c.name for c in declared_columns(dep.asset_key.path[-1])}
            assert dep.column_name in declared, dep
    assert ["crm", "opportunity"] in [
        d.asset_key.path for d in lineage.deps_by_column["open_amount"]
    ]
    assert ACCOUNT_SUMMARY in _job_assets(loaded)


@pytest.mark.parametrize(
    ("drop", "retype", "named"),
    [
        pytest.param(
            {"account": ["currency"], "opportunity": ["currency", "is_closed"]},
            None,
            ["account.currency (missing)", "opportunity.is_closed (missing)"],
            id="missing",
        ),
        pytest.param(
            {},
            {("opportunity", "is_closed"): "text"},
            ["opportunity.is_closed (text, needs bool)"],
            id="wrong-type",
        ),
    ],
)
def test_a_schema_without_the_models_columns_leaves_it_out_saying_which(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, drop: dict, retype: dict, named: list[str]
) -> None:
    monkeypatch.setenv("CRM_SCHEMA_FILE", str(_schema_without(tmp_path, drop, retype)))

    loaded = defs()

    graph = loaded.resolve_asset_graph()
    model = graph.get(ACCOUNT_SUMMARY)
    assert not model.is_materializable
    for text in [*named, "renames", str(tmp_path)]:
        assert text in (model.description or "")
    assert ACCOUNT_SUMMARY not in _job_assets(loaded)
    assert dg.AssetKey(["crm", "account"]) in _job_assets(loaded)
    sensors = {s.name for s in loaded.sensors or []}
    assert "analytics_automation_sensor" not in sensors


def test_a_crm_with_other_fields_runs_the_job_green_after_schema_infer(
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The code location as the env configures it, its job run in-process (the same flow
    through the CLI processes is `test_schema_infer_then_the_main_job_runs_green_on_the_edge_crm`).
    """

    def lacking(resource: str, record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ABSENT}

    monkeypatch.setitem(dialects.SHAPES, "lacking", lacking)
    sandbox = make_sandbox(120, dialect="lacking")
    schema = inferred_schema(sandbox, tmp_path / "crm.schema.yaml")
    settings = {
        "CRM_API_BASE_URL": sandbox.base_url,
        "CRM_API_KEY": TEST_KEY,
        "CRM_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "CRM_SCHEMA_FILE": str(schema),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    with caplog.at_level(logging.WARNING):
        job = defs().resolve_job_def(CRM_SYNC_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert result.success, failure_message(result)
    assert "account_summary: Not built" in caplog.text
    assert "opportunity.is_closed (missing)" in caplog.text
    assert ACCOUNT_SUMMARY not in {e.asset_key for e in result.get_asset_materialization_events()}


@pytest.mark.parametrize("dialect", ["foreign", "edge"])
def test_a_schema_inferred_from_another_crm_keeps_the_model_when_it_has_the_columns(
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dialect: str,
) -> None:
    sandbox = make_sandbox(120, dialect=dialect)
    schema = inferred_schema(sandbox, tmp_path / "crm.schema.yaml")
    monkeypatch.setenv("CRM_SCHEMA_FILE", str(schema))

    loaded = defs()

    model = loaded.resolve_asset_graph().get(ACCOUNT_SUMMARY)
    assert model.is_materializable, model.description
    assert unmet_columns(ACCOUNT_SUMMARY_LINEAGE, load_schema(schema)) == []
    assert ACCOUNT_SUMMARY in _job_assets(loaded)
