"""`crm-assets schema infer`: a schema file derived from what the API sends, for any CRM."""

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from crm_assets.source.contract import crm_resource_names
from crm_assets.source.http import RetryPolicy, build_session
from crm_assets.source.inference import (
    InferenceError,
    ResourceSample,
    flatten,
    infer_schema,
    observed_type,
    suggest_renames,
)
from crm_assets.source.schema import SCHEMA_FILE, load_schema, parse_schema
from crm_assets.source.types import fits
from crm_assets_tests.conftest import REPO, TEST_KEY, SandboxFactory, Sync, check_result
from crm_sandbox.runs import cli_env, venv_script


def _infer(base_url: str, max_pages: int | None = 5) -> str:
    session = build_session(10.0, RetryPolicy())
    base = load_schema(SCHEMA_FILE)
    return infer_schema(
        session, base_url, TEST_KEY, crm_resource_names(), base, max_pages=max_pages
    ).text


def test_flatten_names_columns_as_dlt_does_and_applies_renames() -> None:
    record = {
        "id": 1,
        "acme_owner_id": 3,
        "address": {"city": "Lyon", "geo": {"lat": 1.5}},
        "ownerEmail": "a@b.c",
        "tags": ["x"],
        "empty": {},
    }
    spelled: dict[str, str] = {}

    flat = flatten(record, {"acme_owner_id": "owner_id"}, spelled)

    assert flat == {
        "id": 1,
        "owner_id": 3,
        "address__city": "Lyon",
        "address__geo__lat": 1.5,
        "owner_email": "a@b.c",
        "tags": ["x"],
        "empty": {},
    }
    assert spelled == {"ownerEmail": "owner_email"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "bool"),
        (7, "bigint"),
        (7.5, "double"),
        ("2024-05-01T10:00:00Z", "timestamp"),
        ("2024-05-01", "date"),
        ("2024-13-01", "text"),
        ("0042", "text"),  # digits in a string stay text: postal codes, phone numbers
        ([1], "json"),
    ],
)
def test_a_value_shows_its_own_type(value: object, expected: str) -> None:
    assert observed_type(value) == expected


def test_observed_types_and_nulls_decide_columns_and_reviewed_types_survive() -> None:
    base = load_schema(SCHEMA_FILE)
    declared = {c.name: c for c in base.columns("opportunity")}
    sample = ResourceSample("opportunity", declared)
    sample.add({"id": "A1", "amount": "10.50", "name": None, "is_closed": "true", "region": 3})
    sample.add({"id": "A2", "amount": "n/a", "name": "x", "is_closed": "false", "region": 4.5})

    columns = sample.columns()

    assert columns["id"] == {
        "data_type": "text",  # ids keep the API's type
        "nullable": False,
        "primary_key": True,
        "description": "Opportunity id in the CRM",
    }
    assert columns["amount"]["data_type"] == "text"  # "n/a" does not fit the declared decimal
    assert columns["is_closed"]["data_type"] == "bool"  # "true"/"false" fit the declared bool
    assert columns["name"]["nullable"] is True  # declared non-null, seen null
    assert columns["region"] == {"data_type": "double", "nullable": True}
    assert "stage" not in columns
    assert "stage" in sample.dropped()


def test_vendor_prefixed_fields_get_rename_suggestions() -> None:
    base = load_schema(SCHEMA_FILE)
    sample = ResourceSample("lead", {c.name: c for c in base.columns("lead")})
    sample.add({"id": 1, "xcrm_owner_id": 2, "hs_lead_score": 3, "lead_source": "web"})

    assert suggest_renames([sample], base.renames) == {
        "hs_lead_score": "lead_score",  # a known vendor prefix
        "lead_source": "source",  # the rest names a declared column that went missing
        "xcrm_owner_id": "owner_id",
    }


def test_the_shipped_schema_is_what_infer_writes_for_the_sandbox(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox(2000)  # as `crm-sandbox` serves by default: seed 42

    assert _infer(sandbox.base_url) == SCHEMA_FILE.read_text()


def test_a_schema_inferred_from_a_foreign_crm_syncs_it_without_drift(
    make_sandbox: SandboxFactory,
    sync_all: Sync,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = make_sandbox(150, dialect="foreign")
    schema_file = tmp_path / "crm.schema.yaml"
    schema_file.write_text(_infer(sandbox.base_url, max_pages=None))
    document = yaml.safe_load(schema_file.read_text())
    assert document["suggested_renames"] == {"hs_owner_id": "owner_id"}
    assert document["tables"]["account"]["columns"]["id"]["data_type"] == "text"
    monkeypatch.setenv("CRM_SCHEMA_FILE", str(schema_file))

    result = sync_all(sandbox)

    assert result.success
    for name in crm_resource_names():
        for check in ("no_schema_drift", "reconciled_with_api", "declared_columns"):
            evaluation = check_result(result, name, check)
            assert evaluation.passed, (name, check, evaluation.description)


def test_the_command_writes_the_file_and_says_what_changed(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(120, dialect="foreign")
    output = tmp_path / "schema" / "crm.schema.yaml"
    env = cli_env(base_url=sandbox.base_url, api_key=TEST_KEY)

    done = subprocess.run(
        [venv_script("crm-assets"), "schema", "infer", "--output", str(output)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert load_schema(output).columns("opportunity")[0].data_type == "text"
    assert "gone: stage, owner_id" in done.stdout
    assert "suggested rename: hs_owner_id -> owner_id" in done.stdout
    assert TEST_KEY not in done.stdout + done.stderr + output.read_text()


def test_the_command_without_an_api_names_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [venv_script("crm-assets"), "schema", "infer", "--output", str(tmp_path / "s.yaml")],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert "CRM_API_BASE_URL" in done.stderr
    assert not (tmp_path / "s.yaml").exists()


def _opportunity_sample(**fields: object) -> dict:
    base = load_schema(SCHEMA_FILE)
    record = {
        "id": 7, "name": "deal", "stage": "won", "amount": 10, "currency": "USD",
        "is_closed": True, "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    }  # fmt: skip
    sample = ResourceSample("opportunity", {c.name: c for c in base.columns("opportunity")})
    sample.add({**record, **fields})
    return sample.columns()


@pytest.mark.parametrize(
    ("amount", "precision", "scale"),
    [
        pytest.param(1234.567891, None, None, id="six-decimals-fit-the-default"),
        pytest.param(Decimal("4512345678901234.5678901234"), 38, 10, id="more-decimals"),
        pytest.param(10**30, 38, 7, id="more-digits"),
    ],
)
def test_infer_widens_a_declared_decimal_to_the_money_it_saw(
    amount: object, precision: int | None, scale: int | None
) -> None:
    column = _opportunity_sample(amount=amount)["amount"]

    assert column["data_type"] == "decimal"
    assert (column.get("precision"), column.get("scale")) == (precision, scale)
    assert load_schema_text_fits(column, amount)


def load_schema_text_fits(hints: dict, value: object) -> bool:
    """Whether `value` fits the column the inferred hints declare, as the record gate sees it."""
    parsed = parse_schema(
        {"tables": {"t": {"columns": {"id": {"data_type": "bigint"}, "v": hints}}}}, Path("t")
    )
    return fits(value, parsed.columns("t")[1])


def test_infer_declares_ids_and_links_past_64_bits_as_whole_decimals() -> None:
    big = 18_000_000_000_000_010_003

    columns = _opportunity_sample(id=big, customer_id=big + 1)

    assert columns["id"] | {"description": ""} == {
        "data_type": "decimal", "nullable": False, "precision": 20, "scale": 0,
        "primary_key": True, "description": "",
    }  # fmt: skip
    assert (columns["customer_id"]["data_type"], columns["customer_id"]["scale"]) == ("decimal", 0)
    assert observed_type(2**53 + 1) == "bigint"
    assert observed_type(2**63) == "decimal"


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("duplicate_ids", "repeat an id of the page"),
        ("total_string", "no whole, non-negative 'total'"),
    ],
)
def test_a_sample_refuses_the_pages_a_sync_refuses(
    make_sandbox: SandboxFactory, kind: str, problem: str
) -> None:
    sandbox = make_sandbox(300)
    sandbox.faults.serve_bad("contact", 100, kind)

    with pytest.raises(InferenceError) as refused:
        _infer(sandbox.base_url, max_pages=None)

    assert str(refused.value).startswith("sample of 'contact': GET /v1/contact at offset 100")
    assert problem in str(refused.value)
    assert TEST_KEY not in str(refused.value)


def test_a_sample_answered_with_an_error_status_names_it_without_the_key(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox(300)
    sandbox.faults.inject("lead", [404], offset=0)

    with pytest.raises(
        InferenceError, match=r"sample of 'lead' \(GET /v1/lead\) answered HTTP 404"
    ):
        _infer(sandbox.base_url)
