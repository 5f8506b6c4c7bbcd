"""The edge dialect: what real vendor payloads carry (big ids, odd text, every timestamp form,
money beyond a float), each record still the default record's twin, and all of it on the wire."""

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention

from crm_sandbox.data import CrmStore, _changed_since
from crm_sandbox.edge import (
    MONEY_FIELDS,
    NAME_FIELDS,
    VENDOR_EXTRA_KEYS,
    edge_id,
    money_kind,
    to_edge,
)

SIZE = 600


@pytest.fixture(scope="module")
def edge() -> CrmStore:
    return CrmStore(SIZE, dialect="edge")


@pytest.fixture(scope="module")
def plain() -> CrmStore:
    return CrmStore(SIZE)


def _instant(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_STAMP = re.compile(r"\d{4}-\d\d-\d\d([T ])\d\d:\d\d:\d\d(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")


def _stamp_form(stamp: str) -> str:
    """The spelling of a stamp: separator, fraction digits, zone (Z, +00:00, offset, naive)."""
    match = _STAMP.fullmatch(stamp)
    assert match, stamp
    sep, fraction, zone = match.groups()
    zone = "naive" if zone is None else zone if zone in ("Z", "+00:00") else "offset"
    return f"{sep}|{len(fraction or '')}|{zone}"


def _on_the_wire(value: Any) -> Any:
    """A held value as json.loads(parse_float=Decimal) reads it back from the body."""
    if isinstance(value, dict):
        return {k: _on_the_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_the_wire(v) for v in value]
    return Decimal(repr(value)) if isinstance(value, float) else value


def _names(record: dict[str, Any]) -> str:
    return " ".join(str(record[f]) for f in NAME_FIELDS if f in record)


def test_edge_records_are_deterministic_and_keep_the_default_fields(
    edge: CrmStore, plain: CrmStore
) -> None:
    first, again = (CrmStore(50, dialect="edge").records("lead") for _ in range(2))
    assert first == again
    for name in edge.resources:
        for shaped, original in zip(edge.records(name), plain.records(name), strict=True):
            assert set(original) <= set(shaped)
            assert set(shaped) - set(original) in ({"notes"}, {"notes", "x_vendor_extra"})
            assert to_edge(name, original) == shaped


def test_each_resource_has_its_id_kind_and_links_map_like_their_targets(
    edge: CrmStore, plain: CrmStore
) -> None:
    for name in ("account", "opportunity"):
        assert all(2**63 < r["id"] < 2**64 for r in edge.records(name))
    assert all(2**53 < r["id"] < 2**63 for r in edge.records("contact"))
    lead_ids = [r["id"] for r in edge.records("lead")]
    assert all(str(uuid.UUID(i)) == i for i in lead_ids)
    assert len(set(lead_ids)) == SIZE
    assert edge_id("account", 2**44) < 2**64  # plain ids far beyond any store stay uint64
    for name in edge.resources:
        assert [r["id"] for r in edge.records(name)] == [
            edge_id(name, r["id"]) for r in plain.records(name)
        ]
    links = {
        "contact": {"account_id": "account"},
        "opportunity": {"customer_id": "account", "contact_id": "contact"},
        "account": {"parent_account_id": "account"},
    }
    for name, fields in links.items():
        targets = {field: {r["id"] for r in edge.records(to)} for field, to in fields.items()}
        for shaped, original in zip(edge.records(name), plain.records(name), strict=True):
            for field, target in fields.items():
                want = None if original[field] is None else edge_id(target, original[field])
                assert shaped[field] == want
                assert want is None or want in targets[field]
    assert any(c["account_id"] is not None for c in edge.records("contact"))


def test_names_carry_nul_emoji_combining_marks_rtl_and_zero_width_joiners(
    edge: CrmStore,
) -> None:
    names = [_names(r) for name in edge.resources for r in edge.records(name)]
    assert any("\u0000" in n for n in names)
    assert any("🚀" in n for n in names)
    assert any("\u0301" in n for n in names)
    assert any("\u200d" in n for n in names)
    assert any(any("\u0590" <= c <= "\u06ff" for c in n) for n in names)  # Hebrew / Arabic
    odd = sum(not n.isascii() or "\u0000" in n for n in names)  # a NUL is ASCII
    assert 0.05 < odd / len(names) < 0.15


def test_every_record_has_kilobytes_of_notes_and_a_few_tens_of_kilobytes(
    edge: CrmStore,
) -> None:
    sizes = [len(r["notes"].encode()) for name in edge.resources for r in edge.records(name)]
    normal = [s for s in sizes if s < 20_000]
    assert all(1500 <= s <= 3500 for s in normal)
    assert all(20_000 <= s <= 60_000 for s in sizes if s >= 20_000)
    assert 0 < len(sizes) - len(normal) < 0.03 * len(sizes)


def test_timestamps_come_in_every_form_at_the_default_instant(
    edge: CrmStore, plain: CrmStore
) -> None:
    forms: set[str] = set()
    empty = 0
    for name in edge.resources:
        for shaped, original in zip(edge.records(name), plain.records(name), strict=True):
            assert _instant(shaped["updated_at"]) == _instant(original["updated_at"])
            forms.add(_stamp_form(shaped["updated_at"]))
            if shaped["created_at"] == "":
                empty += 1
            else:
                assert _instant(shaped["created_at"]) == _instant(original["created_at"])
                assert _stamp_form(shaped["created_at"]) == _stamp_form(shaped["updated_at"])
    assert forms == {
        "T|0|Z",
        "T|0|+00:00",
        "T|0|offset",
        "T|3|Z",
        "T|6|+00:00",
        "T|6|offset",
        " |0|+00:00",
        "T|0|naive",
        " |3|naive",
    }
    assert 0 < empty < 0.05 * 4 * SIZE


def test_every_updated_at_form_passes_the_incremental_filter(edge: CrmStore) -> None:
    since = datetime(2024, 7, 1, tzinfo=UTC)
    for name in edge.resources:
        records = edge.records(name)
        changed = [r for r in records if _changed_since(r, since)]
        assert changed == [r for r in records if _instant(r["updated_at"]) >= since]
        page, total = edge.page(name, 0, 5, updated_since=since)
        assert total == len(changed)
        assert page == changed[:5]


def test_newest_first_orders_by_instant_not_spelling(edge: CrmStore) -> None:
    newest, total = edge.page("lead", 0, SIZE, newest_first=True)
    instants = [_instant(r["updated_at"]) for r in newest]
    assert total == SIZE
    assert instants == sorted(instants, reverse=True)


def test_money_comes_as_six_decimals_big_integers_and_decimals_with_every_digit(
    edge: CrmStore,
) -> None:
    for name, field in (("account", "annual_revenue"), ("opportunity", "amount")):
        assert field in MONEY_FIELDS
        records = edge.records(name)
        kinds = [money_kind(r[field]) for r in records if r[field] is not None]
        share = {kind: kinds.count(kind) / len(kinds) for kind in set(kinds)}
        assert 0.2 < share["six_decimals"] < 0.4
        assert 0.05 < share["big_integer"] < 0.15
        assert 0.02 < share["big_decimal"] < 0.08
        assert 0.45 < share["plain"] < 0.65
        body = json.loads(edge.page_body(name, 0, SIZE), parse_float=Decimal)["data"]
        for sent, held in zip(body, records, strict=True):
            value, kind = sent[field], money_kind(held[field])
            if kind == "big_decimal":
                assert value == held[field]
                assert len(value.as_tuple().digits) == 18
            elif kind == "big_integer":
                assert isinstance(value, int)
                assert len(str(value)) == 16
            elif kind == "six_decimals":
                assert value.as_tuple().exponent == -6
                assert float(value) == held[field]


def test_empty_string_enums(edge: CrmStore) -> None:
    records = [r for name in edge.resources for r in edge.records(name)]
    with_status = [r for r in records if "status" in r]  # opportunities have a stage instead
    empty_status = sum(r["status"] == "" for r in with_status) / len(with_status)
    with_currency = [r for r in records if "currency" in r]
    empty_currency = sum(r["currency"] == "" for r in with_currency) / len(with_currency)
    assert 0.02 < empty_status < 0.08
    assert 0.01 < empty_currency < 0.06


def test_vendor_extra_keys_get_distinct_dlt_names(edge: CrmStore) -> None:
    naming = NamingConvention()
    names = [naming.normalize_identifier(key) for key in VENDOR_EXTRA_KEYS]
    assert len(set(names)) == len(VENDOR_EXTRA_KEYS), names
    assert any(not key.isascii() for key in VENDOR_EXTRA_KEYS)
    assert any(" " in key for key in VENDOR_EXTRA_KEYS)
    for name in ("account", "contact"):
        extras = [r["x_vendor_extra"] for r in edge.records(name) if "x_vendor_extra" in r]
        assert 0 < len(extras) < 0.1 * SIZE
        assert all(tuple(extra) == VENDOR_EXTRA_KEYS for extra in extras)
    assert all("x_vendor_extra" not in r for r in edge.records("lead"))
    assert all(
        a["address"] is None or set(a["address"]) == {"street", "city", "postal_code", "country"}
        for a in edge.records("account")
    )


def test_a_200_record_page_round_trips_through_the_json_body(edge: CrmStore) -> None:
    for name in edge.resources:
        body = edge.page_body(name, 100, 200)
        sent = json.loads(body, parse_float=Decimal)
        held = edge.page(name, 100, 200)[0]
        assert sent["total"] == SIZE
        assert len(sent["data"]) == 200
        for got, want in zip(sent["data"], held, strict=True):
            assert got == _on_the_wire(want)
        assert len(body) > 200 * 1500  # kB-sized records
    assert b"\\u0000" in b"".join(edge.page_body(n, 0, SIZE) for n in edge.resources)


def test_admin_changes_address_the_plain_id() -> None:
    store = CrmStore(5, dialect="edge")
    inserted = store.insert("contact", {"first_name": "Zed"})
    updated = store.update("contact", 2, {"status": "bounced"})
    store.delete("contact", 1)
    assert inserted["id"] == edge_id("contact", 6)
    assert updated["id"] == edge_id("contact", 2)
    assert updated["status"] == "bounced"
    assert [r["id"] for r in store.records("contact")] == [
        edge_id("contact", i) for i in (2, 3, 4, 5, 6)
    ]
    assert json.loads(store.page_body("contact", 0, 10))["total"] == 5
