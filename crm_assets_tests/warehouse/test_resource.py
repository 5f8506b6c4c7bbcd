"""The warehouse resource: where the DuckDB file and dlt's state live, and names DuckDB refuses."""

from pathlib import Path

import pytest

from crm_assets.source.config import CrmConfigError
from crm_assets.warehouse.resource import WarehouseResource


@pytest.mark.parametrize("stem", ["crm", "analytics"])
def test_duckdb_file_named_like_a_schema_is_refused(tmp_path: Path, stem: str) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / f"{stem}.duckdb"))
    with pytest.raises(CrmConfigError, match=f"same stem as schema '{stem}'"):
        warehouse.dlt_pipeline("crm_api")


def test_pipeline_state_lives_next_to_the_warehouse(tmp_path: Path) -> None:
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "nested" / "wh.duckdb"))
    pipeline = warehouse.dlt_pipeline("crm_api")
    assert Path(pipeline.pipelines_dir) == tmp_path / "nested" / "dlt_pipelines"
    assert pipeline.dataset_name == "crm"
