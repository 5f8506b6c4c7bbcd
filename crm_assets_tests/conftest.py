"""Fixtures: a real sandbox CRM on a loopback port, a DuckDB file in tmp_path, and a sync helper."""

import functools
import gc
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import dagster as dg
import pytest
from dagster_dlt import DagsterDltResource

from crm_assets.defs.analytics.assets import build_account_summary_asset
from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.defs.crm.checks import build_table_checks
from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.http import RetryPolicy, build_session
from crm_assets.source.inference import infer_schema
from crm_assets.source.schema import SCHEMA_FILE, load_schema
from crm_assets.warehouse.resource import WarehouseResource
from crm_sandbox import CrmStore, FaultPlan, FaultSettings, SandboxServer
from crm_sandbox.runs import cli_env, dagster_command, prepare_dagster_home, venv_script

TEST_KEY = "test-key-7f3a9c51e2"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A test that uses one of these runs a real sandbox server (and usually a whole sync).
_E2E_FIXTURES = {"sandbox", "make_sandbox", "sync", "sync_all"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With CRM_TEST_NO_SKIPS (set by `.ci/run`), a skipped test fails the run: CI provides
    PostgreSQL and chromium, so a skip there means a part silently went untested."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CRM_TEST_NO_SKIPS") and skipped and exitstatus == 0:
        reasons = sorted({str(report.longrepr[-1]) for report in skipped})
        print(f"\nCRM_TEST_NO_SKIPS: {len(skipped)} skipped: {'; '.join(reasons)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fewer garbage collections: the imports left ~1M long-lived objects (Dagster, dlt) that
    every full collection walks again, and syncs allocate fast. Frozen and with higher
    thresholds, collections took 2.2 s instead of 4.7 s of 35 s CPU in `defs/crm/test_assets.py`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _expected_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("long_running")
    return float(marker.args[0]) if marker else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks end-to-end tests, so `pytest -m "not e2e"` runs the fast unit tests alone; puts
    the long-running tests first, longest first, so that no worker starts one near the end
    while the others sit idle (the Makefile hands out one test at a time)."""
    for item in items:
        if _E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=_expected_seconds, reverse=True)  # stable: the rest keep pytest's order


# The test run's own settings (the live PostgreSQL, no skips), not the product's.
_TEST_RUN_ENV = "CRM_TEST_"
# dlt reads its config from env vars too: sources.crm.* and the destinations'.
_PRODUCT_ENV = ("CRM_", "SOURCES__CRM__", "DESTINATION__")


def shell_settings(environ: Mapping[str, str]) -> list[str]:
    """The product's env vars set in `environ` (the developer's shell), which no test may see."""
    return [
        name
        for name in environ
        if name.startswith(_PRODUCT_ENV) and not name.startswith(_TEST_RUN_ENV)
    ]


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No telemetry, and none of the product's env vars leaking in from the developer's shell:
    every `CRM_*` (but the test run's own `CRM_TEST_*`) and dlt's `SOURCES__CRM__*`."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    for name in shell_settings(os.environ):
        monkeypatch.delenv(name)


def check_result(
    result: dg.ExecuteInProcessResult, asset: str, name: str
) -> dg.AssetCheckEvaluation:
    """The one evaluation of check `name` on `crm/<asset>` in a run."""
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(["crm", asset]) and e.check_name == name
    ]
    return evaluation


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """Plain values of the metadata on `crm/<asset>`'s materialization in a run."""
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["crm", asset])
    ]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


SandboxFactory = Callable[..., SandboxServer]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """Starts sandboxes with the given sizes / fault settings; stops them after the test."""
    servers: list[SandboxServer] = []

    def make(
        records: int | dict[str, int] = 250,
        dialect: str = "default",
        api_key: str = TEST_KEY,
        **settings: object,
    ) -> SandboxServer:
        server = SandboxServer(
            CrmStore(records, dialect=dialect), FaultPlan(FaultSettings(**settings)), api_key
        ).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> SandboxServer:
    return make_sandbox()


POSTGRES_URL_ENV = "CRM_TEST_POSTGRES_URL"  # `.ci/postgres start` prints one; `.ci/run` sets it
# For a test that must hold on every destination: `@on_each_destination` runs it once per entry,
# through the `warehouse` fixture (and `sync`/`sync_all`, which load into it).
on_each_destination = pytest.mark.parametrize("warehouse", ["duckdb", "postgres"], indirect=True)


def postgres_url() -> str:
    """The live test server's URL; skips the test, saying why, when there is none."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_ENV} (`.ci/postgres start`)")
    return url


@pytest.fixture
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseResource]:
    """A DuckDB file in tmp_path or, with param "postgres", a schema of its own on the live
    server (dropped afterwards; dlt's local state stays in tmp_path)."""
    destination = getattr(request, "param", "duckdb")
    if destination == "duckdb":
        yield WarehouseResource(duckdb_path=str(tmp_path / "warehouse.duckdb"))
        return
    warehouse = WarehouseResource(
        destination=destination,
        postgres_url=postgres_url(),
        duckdb_path=str(tmp_path / "state" / "unused.duckdb"),
        dataset_name=f"crm_{uuid.uuid4().hex[:10]}",
    )
    yield warehouse
    with warehouse.sql_client() as client:
        client.execute_sql(f"drop schema if exists {warehouse.dataset_name} cascade")


def cli_materialize(env: dict[str, str], selection: str = "group:crm") -> CompletedProcess[str]:
    """`dagster asset materialize --select <selection>` on the code location, output captured."""
    return subprocess.run(
        dagster_command("asset", "materialize", "--select", selection),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def sandbox_cli_env(tmp_path: Path, sandbox: SandboxServer) -> dict[str, str]:
    """A CLI run's env as `make dev` has it (.dagster/dagster.yaml: the pool at 1) in tmp_path,
    against `sandbox`, into a DuckDB file in tmp_path."""
    return cli_env(
        dagster_home=prepare_dagster_home(
            tmp_path / "dagster_home", REPO / ".dagster" / "dagster.yaml"
        ),
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        duckdb_path=tmp_path / "warehouse.duckdb",
    )


def warehouse_env(warehouse: WarehouseResource) -> dict[str, str]:
    """The CRM_* variables that configure `warehouse` for a CLI run of the code location."""
    env = {
        "CRM_DESTINATION": warehouse.destination,
        "CRM_DUCKDB_PATH": str(warehouse.path),
        "CRM_DATASET": warehouse.dataset_name,
    }
    return env | ({"CRM_POSTGRES_URL": warehouse.postgres_url} if warehouse.postgres_url else {})


@pytest.fixture(scope="session")
def crm_assets_def() -> dg.AssetsDefinition:
    return build_crm_assets()


Sync = Callable[..., dg.ExecuteInProcessResult]


def crm_resources(
    base_url: str, warehouse: WarehouseResource, **api: Any
) -> dict[str, dg.ConfigurableResource]:
    """The resources a CRM run binds: dlt, the API at `base_url` (settings overridable), the
    warehouse."""
    return {
        "dlt": DagsterDltResource(),
        "crm_api": CrmApiResource(**{"base_url": base_url, "api_key": TEST_KEY, **api}),
        "warehouse": warehouse,
    }


@functools.cache
def _worker_instance() -> dg.DagsterInstance:
    """One in-memory instance for this test process's runs: a run's result holds only its own
    events, and building an instance costs more CPU than many a small sync (~0.12 s)."""
    return dg.DagsterInstance.ephemeral()


def materialize(
    definitions: list[Any],
    sandbox: SandboxServer,
    warehouse: WarehouseResource,
    selection: object = None,
    mode: str | None = None,
    instance: dg.DagsterInstance | None = None,
    **api: Any,
) -> dg.ExecuteInProcessResult:
    """One in-process run of `definitions` against `sandbox` into `warehouse`; a failed run is
    returned, not raised. `mode` is the sync's (full, incremental)."""
    run_config = {"ops": {"crm_sync": {"config": {"mode": mode}}}} if mode else None
    return dg.materialize(
        definitions,
        resources=crm_resources(sandbox.base_url, warehouse, **api),
        selection=selection,  # type: ignore[arg-type]
        run_config=run_config,
        instance=instance or _worker_instance(),
        raise_on_error=False,
    )


def _materializer(definitions: list[dg.AssetsDefinition], warehouse: WarehouseResource) -> Sync:
    def run(
        sandbox: SandboxServer, selection: object = None, mode: str | None = None, **api: object
    ) -> dg.ExecuteInProcessResult:
        return materialize(definitions, sandbox, warehouse, selection, mode, **api)

    return run


@pytest.fixture
def sync(crm_assets_def: dg.AssetsDefinition, warehouse: WarehouseResource) -> Sync:
    """Materializes CRM assets in-process against a sandbox; API settings can be overridden."""
    return _materializer([crm_assets_def], warehouse)


@pytest.fixture(scope="session")
def table_checks() -> dg.AssetChecksDefinition:
    return build_table_checks(crm_resource_names())


@pytest.fixture
def sync_all(
    crm_assets_def: dg.AssetsDefinition,
    table_checks: dg.AssetChecksDefinition,
    warehouse: WarehouseResource,
) -> Sync:
    """Like `sync`, with the table checks and the models on top, as the job runs them."""
    return _materializer([crm_assets_def, table_checks, build_account_summary_asset()], warehouse)


def inferred_schema(sandbox: SandboxServer, path: Path) -> Path:
    """`schema infer --all` against `sandbox`, in-process, written to `path`."""
    inferred = infer_schema(
        build_session(10.0, RetryPolicy()),
        sandbox.base_url,
        TEST_KEY,
        crm_resource_names(),
        load_schema(SCHEMA_FILE),
        max_pages=None,
    )
    path.write_text(inferred.text)
    return path


def cli_infer_then_run_job(env: dict[str, str], schema: Path) -> CompletedProcess[str]:
    """As the README's "Pointing at a real CRM": `crm-assets schema infer --all` into `schema`,
    then `dagster job execute -j crm_sync_job` with it in force; the job's run, output captured."""
    infer = [venv_script("crm-assets"), "schema", "infer", "--all", "--output", str(schema)]
    inferred = subprocess.run(infer, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert inferred.returncode == 0, inferred.stderr[-2000:]
    return subprocess.run(
        dagster_command("job", "execute", "-j", CRM_SYNC_JOB),
        cwd=REPO,
        env=env | {"CRM_SCHEMA_FILE": str(schema)},
        capture_output=True,
        text=True,
        timeout=300,
    )
