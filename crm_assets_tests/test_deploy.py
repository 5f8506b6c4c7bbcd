"""What deploy/ holds: the production instance config against a live PostgreSQL (runs and events
read back by Dagster and by plain SQL; four resources loading at once, no secret stored even at
DEBUG), the image's files and command (serving the definitions, loaded with no env set), and
the Helm values.
"""

import json
import re
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import grpc
import psycopg2
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crm_assets.defs.crm.translator import asset_key
from crm_assets.source.contract import crm_resource_names
from crm_assets.warehouse.resource import WAREHOUSE_POOL, WarehouseResource
from crm_assets_tests.conftest import (
    REPO,
    SandboxFactory,
    free_port,
    materialize,
    postgres_url,
    warehouse_env,
)
from crm_assets_tests.support import (
    AWKWARD_KEY,
    DEBUG_EVERYWHERE,
    failure_message,
    files_containing,
    secret_forms,
    start_group,
    stop_group,
)
from crm_assets_tests.warehouse_rows import assert_tables_match
from crm_sandbox.runs import cli_env, dagster_command, prepare_dagster_home, venv_script

DEPLOY_CONFIG = Path(__file__).parents[1] / "deploy" / "dagster.yaml"


def _autocommit(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True  # CREATE / DROP DATABASE refuse a transaction
    try:
        connection.cursor().execute(statement)
    finally:
        connection.close()


@pytest.fixture
def dagster_database() -> Iterator[str]:
    """A database of its own on the live server for Dagster's storage; dropped afterwards."""
    server = postgres_url()
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    _autocommit(server, f"create database {name}")
    # SQLAlchemy 2.1 takes psycopg 3 for a plain postgresql:// URL; dagster-postgres needs psycopg2
    url = urlsplit(server)._replace(scheme="postgresql+psycopg2", path=f"/{name}")
    yield urlunsplit(url)
    _autocommit(server, f"drop database {name} with (force)")


@pytest.fixture
def deploy_home(tmp_path: Path, dagster_database: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml, its storage in `dagster_database`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_database)
    return home


def _dagster_query(url: str, query: str, *params: object) -> list[tuple]:
    """`query`'s rows from the Dagster database at `url` (dagster-postgres's SQLAlchemy URL)."""
    connection = psycopg2.connect(url.replace("+psycopg2", ""))
    try:
        cursor = connection.cursor()
        cursor.execute(query, params)
        return cursor.fetchall()
    finally:
        connection.close()


def test_the_deploy_instance_keeps_runs_and_events_in_postgres(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    dagster_database: str,
    deploy_home: Path,
    tmp_path: Path,
) -> None:
    sandbox = make_sandbox(120)

    with dg.DagsterInstance.from_config(str(deploy_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        warehouse = WarehouseResource(duckdb_path=str(tmp_path / "warehouse.duckdb"))
        result = materialize([crm_assets_def], sandbox, warehouse, instance=instance)
        assert result.success
        materialization = instance.get_latest_materialization_event(asset_key("contact"))

    assert materialization is not None
    assert materialization.run_id == result.run_id
    run = result.run_id
    status = _dagster_query(dagster_database, "select status from runs where run_id = %s", run)
    assert status == [("SUCCESS",)]
    materializations = _dagster_query(
        dagster_database,
        "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
        run,
        "ASSET_MATERIALIZATION",
    )
    assert materializations == [(4,)]  # one per CRM table


def _stored_in_postgres(url: str, text: str) -> int:
    """How many rows of the Dagster database's runs and events hold `text`."""
    ((count,),) = _dagster_query(
        url,
        "select (select count(*) from runs where strpos(run_body, %s) > 0)"
        " + (select count(*) from event_logs where strpos(event, %s) > 0)",
        text,
        text,
    )
    return count


@pytest.mark.long_running(45)
@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_on_postgres_four_cli_runs_load_at_once_and_store_no_secret_even_at_debug(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    dagster_database: str,
    deploy_home: Path,
    warehouse: WarehouseResource,
) -> None:
    """Four launches, one resource each, as four workers would run them: none waits for the
    pool (deploy/dagster.yaml's limit, set as docs/deploying.md says), each in its own dlt
    working directory; with every logger at DEBUG, neither the key nor the password is in their
    output, files or runs."""
    sandbox = make_sandbox(400, api_key=AWKWARD_KEY, latency_ms=10)
    with (deploy_home / "dagster.yaml").open("a") as config:
        config.write(DEBUG_EVERYWHERE)
    env = cli_env(dagster_home=deploy_home, base_url=sandbox.base_url, api_key=AWKWARD_KEY)
    env |= warehouse_env(warehouse)
    limit = yaml.safe_load(DEPLOY_CONFIG.read_text())["concurrency"]["pools"]["default_limit"]
    with dg.DagsterInstance.from_config(str(deploy_home)) as instance:
        # a fresh deployment's one step before its first runs (docs/deploying.md): what
        # `dagster instance concurrency set crm_warehouse <limit>` does
        instance.event_log_storage.set_concurrency_slots(WAREHOUSE_POOL, limit)
    first = materialize([crm_assets_def], sandbox, warehouse, api_key=AWKWARD_KEY)
    assert first.success, failure_message(first)
    for name in crm_resource_names():
        sandbox.store.insert(name, {})  # a change everywhere since the first sync
    launches = [
        subprocess.Popen(
            dagster_command("asset", "materialize", "--select", f"crm/{name}"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in crm_resource_names()
    ]
    outputs = [launch.communicate(timeout=300)[0] for launch in launches]

    failed = [
        out[-3000:] for launch, out in zip(launches, outputs, strict=True) if launch.returncode
    ]
    assert not failed, failed
    assert not any("blocked by limit for pool" in output for output in outputs)
    assert_tables_match(sandbox.store, warehouse)
    assert not list((warehouse.pipelines_dir / "runs").glob("*"))  # each run removed its own
    assert _stored_in_postgres(dagster_database, "GET /v1/lead?"), "no request line captured"
    for secret in secret_forms(AWKWARD_KEY, warehouse):
        assert not any(secret in output for output in outputs)
        assert files_containing(deploy_home, secret) == [], secret
        assert files_containing(warehouse.pipelines_dir, secret) == [], secret
        assert _stored_in_postgres(dagster_database, secret) == 0, secret


def _dockerfile() -> tuple[list[list[str]], list[str], list[str]]:
    """deploy/Dockerfile's COPY sources, the extras it installs, and its CMD."""
    text = (REPO / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    copies = [line[1:-1] for line in lines if line[0] == "COPY"]
    (install,) = [line for line in lines if line[0] == "RUN" and "install" in line]
    extras = re.search(r"\.\[([a-z0-9_,-]+)\]", " ".join(install))
    (cmd,) = [line for line in lines if line[0] == "CMD"]
    return copies, extras.group(1).split(",") if extras else [], json.loads(" ".join(cmd[1:]))


def _health(port: str) -> int:
    """The code server's answer to the gRPC health check `dagster api grpc-health-check` asks,
    asked from here: a CLI process per attempt would cost more than the server's start."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            request = health_pb2.HealthCheckRequest(service="DagsterApi")
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status
        except grpc.RpcError:
            return health_pb2.HealthCheckResponse.UNKNOWN


def _served_jobs(port: str, home: str) -> list[str]:
    """The jobs of the code location the code server at `port` serves. Its load error fails the
    test, as `dagster definitions validate` reports it of the code server it starts."""
    target = GrpcServerTarget(host="127.0.0.1", port=int(port), socket=None, location_name=None)
    with (
        dg.DagsterInstance.from_config(home) as instance,
        WorkspaceProcessContext(instance, target) as workspace,
    ):
        (entry,) = workspace.create_request_context().get_code_location_entries().values()
        assert entry.code_location, entry.load_error and entry.load_error.message
        repositories = entry.code_location.get_repositories().values()
        return sorted(job.name for r in repositories for job in r.get_all_jobs())


@pytest.mark.long_running(20)
def test_the_image_copies_what_exists_and_serves_the_code_location(tmp_path: Path) -> None:
    """What can be checked without building it (no registry for base images here): its files
    and extras exist, and its command, run here with no CRM_* set, serves the definitions
    loaded without error (as `dagster definitions validate` checks them)."""
    copies, extras, cmd = _dockerfile()
    for sources in copies:
        assert all((REPO / source).exists() for source in sources), sources
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(extras) <= set(declared["optional-dependencies"]), extras
    assert cmd[:3] == ["dagster", "code-server", "start"]
    port = str(free_port())
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in cmd[1:]]  # loopback only here
    args[args.index("-p") + 1] = port
    env = cli_env(dagster_home=prepare_dagster_home(tmp_path / "home"))
    log = tmp_path / "code_server.log"
    with log.open("w") as output:
        server = start_group(  # stopped with the code server it starts
            [venv_script("dagster"), *args],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while _health(port) != health_pb2.HealthCheckResponse.SERVING:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the code server did not answer in 90 s"
            time.sleep(0.5)
        assert _served_jobs(port, env["DAGSTER_HOME"]) == ["__ASSET_JOB", "crm_sync_job"]
    finally:
        stop_group(server)


def test_the_helm_values_name_the_image_module_and_settings_that_exist() -> None:
    values = yaml.safe_load((REPO / "deploy" / "k8s" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "crm_assets.definitions"]
    assert deployment["port"] == 4000  # the Dockerfile's EXPOSE and code server port
    source = "\n".join(p.read_text() for p in (REPO / "crm_assets").rglob("*.py"))
    for variable in deployment["env"]:
        assert f'"{variable["name"]}"' in source, variable["name"]  # a setting the code reads
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
