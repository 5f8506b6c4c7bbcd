"""The warehouse by destination: formats, names, secrets. The end-to-end tests run on every
destination through the `warehouse` fixture (`on_each_destination` in conftest)."""

import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import dagster as dg
import psycopg2
import pytest

import crm_assets.defs.crm.assets as sync_assets
from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.destinations import DESTINATIONS
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import SandboxFactory, materialize, postgres_url
from crm_assets_tests.support import failure_message
from crm_sandbox import SandboxServer


def test_each_destination_has_its_exact_and_fastest_loader_format(tmp_path: Path) -> None:
    assert {name: d.loader_file_format for name, d in DESTINATIONS.items()} == {
        "duckdb": "parquet",
        "postgres": "insert_values",  # csv's COPY loads an empty string as NULL
    }
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "w.duckdb"))
    assert (warehouse.destination, warehouse.file_format) == ("duckdb", "parquet")


def test_an_unknown_destination_is_refused_naming_the_variable(tmp_path: Path) -> None:
    warehouse = WarehouseResource(destination="oracle", duckdb_path=str(tmp_path / "w.duckdb"))
    with pytest.raises(CrmConfigError, match="CRM_DESTINATION") as raised:
        warehouse.dlt_pipeline()
    assert "'oracle' is not one of duckdb, postgres" in str(raised.value)


def test_a_postgres_url_with_a_password_goes_to_dlt_as_it_is(tmp_path: Path) -> None:
    url = "postgresql://crm:pg-s3cret%2Fx@db.example:5432/crm"
    warehouse = WarehouseResource(
        destination="postgres", postgres_url=url, duckdb_path=str(tmp_path / "w.duckdb")
    )
    assert DESTINATIONS["postgres"].build(warehouse, None).config_params["credentials"] == url


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        pytest.param(
            "postgresql://crm@db.example/crm",
            "postgresql://crm@db.example:5432/crm?connect_timeout=15",
            id="tcp",
        ),
        pytest.param(  # a Unix socket's directory, as libpq takes it: the host parameter
            "postgresql://crm@/crm?host=/run/postgresql&port=5433",
            "postgresql://crm@/crm?connect_timeout=15&host=%2Frun%2Fpostgresql&port=5433",
            id="unix_socket",
        ),
    ],
)
def test_a_postgres_url_without_a_password_leaves_it_to_libpq(
    tmp_path: Path, url: str, dsn: str
) -> None:
    """No password in the connection string: libpq looks in PGPASSWORD and the pgpass file, or
    the server needs none (trust, peer)."""
    warehouse = WarehouseResource(
        destination="postgres", postgres_url=url, duckdb_path=str(tmp_path / "w.duckdb")
    )
    credentials = DESTINATIONS["postgres"].build(warehouse, None).config_params["credentials"]
    assert credentials.password is None
    assert credentials.to_native_representation() == dsn
    assert warehouse.secrets() == []
    assert warehouse.table_name("t") == "crm.crm.t"


def _passwordless_url(login: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test server's URL without its password, and what lets libpq in without it."""
    url = urlsplit(postgres_url())
    assert url.password, "the test server's URL has the password of its user"
    database = url.path.lstrip("/")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    # Not the developer's ~/.pgpass: only what the case sets up lets the connection in.
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no.pgpass"))
    if login == "trust":  # `.ci/postgres` trusts crm_trust on loopback
        return f"postgresql://crm_trust@{url.hostname}:{url.port}/{database}"
    if login == "pgpass":
        password = unquote(url.password).replace("\\", "\\\\").replace(":", "\\:")
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{url.hostname}:{url.port}:{database}:{url.username}:{password}\n")
        pgpass.chmod(0o600)  # libpq ignores a pgpass file others can read
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
    elif login == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", unquote(url.password))
    elif login == "unix_socket":  # `.ci/postgres` trusts local connections (peer, elsewhere)
        with psycopg2.connect(postgres_url()) as connection, connection.cursor() as cursor:
            cursor.execute("show unix_socket_directories")
            directory = cursor.fetchone()[0].split(",")[0].strip()
        connection.close()
        if not Path(directory).is_dir():
            pytest.skip(f"the test server's Unix socket directory {directory} is not on this host")
        query = f"host={quote(directory, safe='')}&port={url.port}"
        return f"postgresql://{url.username}@/{database}?{query}"
    return f"postgresql://{url.username}@{url.hostname}:{url.port}/{database}"


@pytest.mark.parametrize("login", ["trust", "pgpass", "PGPASSWORD", "unix_socket"])
def test_a_postgres_url_without_a_password_loads(
    login: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _passwordless_url(login, tmp_path, monkeypatch)
    warehouse = WarehouseResource(
        destination="postgres",
        postgres_url=url,
        duckdb_path=str(tmp_path / "state" / "unused.duckdb"),
        dataset_name=f"crm_{uuid.uuid4().hex[:10]}",
    )
    assert warehouse.secrets() == []

    with warehouse.open_pipeline() as pipeline:
        try:
            pipeline.run([{"id": 1}, {"id": 2}], table_name="t")
            with pipeline.sql_client() as client:
                table = client.make_qualified_table_name("t")
                assert client.execute_sql(f"select id from {table} order by id") == [(1,), (2,)]
                ((user, over_tcp),) = client.execute_sql(
                    "select current_user, inet_server_addr() is not null"
                )
        finally:
            with pipeline.sql_client() as client:
                client.execute_sql(f"drop schema if exists {warehouse.dataset_name} cascade")
    assert user == urlsplit(url).username
    assert over_tcp == (login != "unix_socket")


def test_the_warehouse_password_is_masked_in_what_a_sync_logs(
    make_sandbox: SandboxFactory,
    crm_assets_def: dg.AssetsDefinition,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "pg-s3cret/with+chars"  # URL-encoded in the URL, as a user would write it
    warehouse = WarehouseResource(
        duckdb_path=str(tmp_path / "warehouse.duckdb"),
        postgres_url="postgresql://crm:pg-s3cret%2Fwith%2Bchars@db.example:5432/crm",
    )
    assert warehouse.secrets() == ["pg-s3cret%2Fwith%2Bchars", password]
    # Something inside the sync logs the password in both forms (a driver's debug line, say).
    counts = sync_assets.row_counts

    def row_counts_and_a_leaky_log(client: Any, table: str) -> tuple[int, int]:
        logging.getLogger("some.driver").warning("dsn password=%s", password)
        logging.getLogger("some.driver").warning("url crm:%s@db", "pg-s3cret%2Fwith%2Bchars")
        return counts(client, table)

    monkeypatch.setattr(sync_assets, "row_counts", row_counts_and_a_leaky_log)
    with caplog.at_level(logging.WARNING, logger="some.driver"):
        result = _materialize([crm_assets_def], make_sandbox(20), warehouse)

    assert result.success
    assert "dsn password=***" in caplog.text
    assert "url crm:***@db" in caplog.text
    assert password not in caplog.text
    assert "pg-s3cret%2F" not in caplog.text


def _materialize(
    assets: list[Any],
    sandbox: SandboxServer,
    warehouse: WarehouseResource,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    result = materialize(assets, sandbox, warehouse)
    if raise_on_error and not result.success:
        raise AssertionError(failure_message(result))
    return result
