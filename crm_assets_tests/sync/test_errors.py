"""A failed sync's message: what to change, and where."""

from pathlib import Path

import pytest
from dlt.common.schema.exceptions import DataValidationError

from crm_assets.source.http import RetryPolicy
from crm_assets.source.schema import SCHEMA_FILE, SCHEMA_FILE_ENV
from crm_assets.sync.errors import describe_sync_failure


def _type_frozen(table: str, column: str) -> DataValidationError:
    """What dlt raises when an undeclared field's type changes under `data_type: freeze`."""
    return DataValidationError("crm", table, column, "data_type", "freeze", None, {})


@pytest.mark.parametrize("configured", [False, True])
def test_a_frozen_type_points_to_the_schema_file_in_force(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, configured: bool
) -> None:
    schema_file = tmp_path / "ours.schema.yaml"
    if configured:
        monkeypatch.setenv(SCHEMA_FILE_ENV, str(schema_file))
    else:
        monkeypatch.delenv(SCHEMA_FILE_ENV, raising=False)

    message = describe_sync_failure(_type_frozen("lead", "region_code__v_text"), RetryPolicy(), [])

    assert message.startswith("CRM resource 'lead': undeclared field 'region_code' changed type")
    assert f"schema file {schema_file if configured else SCHEMA_FILE}" in message
    assert "crm-assets schema infer" in message
    assert "schema.py" not in message
