"""Sandbox records: deterministic, realistic, linked, and mutable between syncs."""

import random

import pytest

from crm_sandbox.data import CrmStore, UnknownRecordError


def test_same_seed_same_records_other_seed_other_records() -> None:
    assert CrmStore(40, seed=1).records("account") == CrmStore(40, seed=1).records("account")
    assert CrmStore(40, seed=1).records("account") != CrmStore(40, seed=2).records("account")


def test_sizes_per_resource_do_not_change_other_resources_records() -> None:
    small = CrmStore({"account": 30, "lead": 5})
    assert [small.total(n) for n in small.resources] == [30, 0, 5, 0]
    assert small.records("lead") == CrmStore({"account": 30, "lead": 5}).records("lead")


def test_records_look_like_a_crm() -> None:
    store = CrmStore(300)
    accounts = store.records("account")
    account_ids = {a["id"] for a in accounts}
    assert [a["id"] for a in accounts] == list(range(1, 301))
    assert any(a["address"] is None for a in accounts)
    assert any(isinstance(a["address"], dict) and a["address"]["city"] for a in accounts)
    assert any(a["tags"] for a in accounts)
    assert any(a["annual_revenue"] is None for a in accounts)
    contacts = store.records("contact")
    assert {c["account_id"] for c in contacts} - {None} <= account_ids
    assert any(c["account_id"] is None for c in contacts)
    opportunities = store.records("opportunity")
    assert {o["customer_id"] for o in opportunities} <= account_ids
    assert all(o["created_at"] <= o["updated_at"] for o in opportunities)
    assert {"@"} <= set(contacts[0]["email"])


def test_insert_update_delete() -> None:
    store = CrmStore(3)
    before = store.records("lead")[1]

    inserted = store.insert("lead", {"first_name": "Zed"})
    updated = store.update("lead", 2, {"status": "qualified"})
    store.delete("lead", 1)

    assert inserted["id"] == 4
    assert updated["status"] == "qualified"
    assert updated["updated_at"] > before["updated_at"]
    assert [r["id"] for r in store.records("lead")] == [2, 3, 4]
    assert store.page("lead", 1, 10)[0][0]["id"] == 3
    with pytest.raises(UnknownRecordError):
        store.update("lead", 1, {})


def test_pages_are_copies() -> None:
    store = CrmStore(2)
    store.page("account", 0, 1)[0][0]["name"] = "mutated"
    assert store.records("account")[0]["name"] != "mutated"


def test_churn_changes_one_record_per_call() -> None:
    store = CrmStore(20)
    before = {name: store.records(name) for name in store.resources}

    resource, record_id = store.churn(random.Random(5))

    changed = [r for r in store.records(resource) if r not in before[resource]]
    assert [r["id"] for r in changed] == [record_id]
    assert all(store.records(n) == before[n] for n in store.resources if n != resource)


def test_churn_moves_deals_through_their_stages() -> None:
    store = CrmStore(20)
    rng = random.Random(3)
    moves = []
    for _ in range(60):
        before = {r["id"]: r["stage"] for r in store.records("opportunity")}
        resource, record_id = store.churn(rng)
        if resource == "opportunity" and record_id in before:
            (after,) = [r for r in store.records("opportunity") if r["id"] == record_id]
            moves.append((before[record_id], after["stage"], after["is_closed"]))

    assert moves
    assert all(old != new for old, new, _ in moves)
    assert all(closed == new.startswith("closed_") for _, new, closed in moves)
    assert not any("status" in r for r in store.records("opportunity"))
