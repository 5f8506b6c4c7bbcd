"""Our destination factories: dlt's own destinations to the pipeline, with the configuration their
capabilities follow resolved once per factory instead of on every call."""

import functools
from typing import Any

import dlt
import pytest
from dlt.common.destination.reference import Destination

from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import on_each_destination


def _comparable(capabilities: Any) -> dict[str, Any]:
    """The capabilities' values; a `functools.partial` by what it calls (each call makes one)."""
    return {
        key: (value.func, value.args, value.keywords)
        if isinstance(value, functools.partial)
        else value
        for key, value in capabilities.items()
    }


@on_each_destination
def test_the_capabilities_are_dlts_and_resolved_once_per_pipeline(
    warehouse: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved: list[bool] = []  # accept_partial of each resolution of the destination's config
    resolve = Destination.configuration

    def counted(self: Destination, initial_config: Any, accept_partial: bool = False) -> Any:
        resolved.append(accept_partial)
        return resolve(self, initial_config, accept_partial)

    monkeypatch.setattr(Destination, "configuration", counted)
    pipeline = warehouse.dlt_pipeline(pipelines_dir=warehouse.path.parent / "factory_test")
    asked = {"n": 0}
    capabilities = type(pipeline.destination).capabilities

    def counting(self: Destination, *args: Any, **kwargs: Any) -> Any:
        asked["n"] += 1
        return capabilities(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline.destination), "capabilities", counting)
    pipeline.run([{"id": 1, "name": "one"}], table_name="factory_probe")
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("factory_probe")
        assert client.execute_sql(f"select id, name from {table}") == [(1, "one")]
        if warehouse.destination == "postgres":
            client.drop_dataset()

    assert asked["n"] > 10  # what dlt asks in one run and one SQL client
    assert resolved.count(True) == 1
    assert resolved.count(False) >= 2  # each job client still resolves its credentials
    destination = pipeline.destination
    factory = getattr(dlt.destinations, warehouse.destination)  # dlt's, as it comes
    fields = factory.spec.__dataclass_fields__  # without ours (the memory governor)
    config = {k: v for k, v in destination.config_params.items() if k in fields}
    plain = factory(**config, **destination.caps_params)
    assert destination.destination_type == f"dlt.destinations.{warehouse.destination}"
    assert destination.destination_name == plain.destination_name == warehouse.destination
    assert _comparable(destination.capabilities()) == _comparable(plain.capabilities())
