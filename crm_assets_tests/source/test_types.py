"""The type table: a row for every type the schema file can declare, its facets in agreement."""

import dataclasses
import itertools
import json

import pyarrow as pa
import pytest
from dlt.common.data_types import py_type_to_sc_type

from crm_assets.defs.crm.metadata import display_type
from crm_assets.source.inference import observed_type
from crm_assets.source.schema import DATA_TYPES
from crm_assets.source.types import TYPES, DataType, fits

_MAY_NOT_APPLY = {f.name for f in dataclasses.fields(DataType) if f.default is None}
_NUMBERS = sorted(
    (r for r in TYPES.values() if r.number_rank is not None), key=lambda r: r.number_rank
)


def test_every_type_the_schema_file_can_declare_has_a_row_and_no_other_does() -> None:
    assert sorted(TYPES) == sorted(DATA_TYPES)
    assert all(row.name == name for name, row in TYPES.items())


@pytest.mark.parametrize("name", DATA_TYPES)
def test_every_row_has_every_facet_and_each_holds_for_its_example(name: str) -> None:
    row = TYPES[name]
    facets = [f.name for f in dataclasses.fields(row) if f.name not in _MAY_NOT_APPLY]
    assert [f for f in facets if getattr(row, f) is None] == []

    assert observed_type(row.example) == name  # recognised, and by no row asked before it
    assert fits(row.example, name)
    converted = row.convert(row.example)
    carried = json.dumps(converted) if name == "json" else converted  # JSON text in arrow
    assert pa.array([carried], row.arrow).to_pylist() == [carried]
    shown = display_type(name)
    assert shown.startswith(name)
    assert "{" not in shown


@pytest.mark.parametrize("name", [n for n, row in TYPES.items() if row.exact is not None])
def test_a_value_of_the_exact_class_is_what_converting_it_would_give(name: str) -> None:
    row = TYPES[name]  # the gate passes such values on without calling the converter

    assert type(row.example) is row.exact
    assert row.convert(row.example) == row.example


@pytest.mark.parametrize("name", [n for n, row in TYPES.items() if row.dlt_infers is not None])
def test_dlt_types_an_undeclared_value_of_the_class_as_the_row_says(name: str) -> None:
    row = TYPES[name]

    assert py_type_to_sc_type(row.dlt_infers) == name
    assert type(row.example) is row.dlt_infers


def test_a_mix_of_numbers_joins_to_one_that_holds_each_of_them() -> None:
    assert len({r.number_rank for r in _NUMBERS}) == len(_NUMBERS) > 1
    for narrower, wider in itertools.pairwise(_NUMBERS):
        assert fits(narrower.example, wider.name)
