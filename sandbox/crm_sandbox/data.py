"""Deterministic CRM records for the sandbox API, and the thread-safe store that serves them."""

from __future__ import annotations

import copy
import itertools
import random
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

import orjson

from crm_sandbox.dialects import SHAPES

Record = dict[str, Any]

SANDBOX_RESOURCES: tuple[str, ...] = ("account", "contact", "lead", "opportunity")
DEFAULT_RECORDS_PER_RESOURCE = 2000

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Ken",
    "Margaret",
    "Linus",
    "Frances",
    "Dennis",
)
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Allen")
_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent")
_SUFFIX = ("Inc", "GmbH", "Ltd", "LLC", "SA", "BV")
_INDUSTRIES = ("software", "retail", "finance", "manufacturing", "healthcare", "logistics")
_CITIES = (("Berlin", "DE"), ("Paris", "FR"), ("London", "GB"), ("Austin", "US"), ("Lyon", "FR"))
_CURRENCIES = ("USD", "EUR", "GBP")
_TAGS = ("enterprise", "smb", "partner", "priority", "renewal", "trial")
_STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")


def _next_stage(stage: object, rng: random.Random) -> dict[str, object]:
    """A deal's next stage: on to the next open one, or closed (won or lost), or reopened."""
    if stage in _STAGES[:3]:
        following = _STAGES[_STAGES.index(stage) + 1]
    elif stage == "negotiation":
        following = rng.choice(("closed_won", "closed_lost"))
    else:
        following = "prospecting"
    return {"stage": following, "is_closed": following.startswith("closed_")}


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _stamps(rng: random.Random) -> dict[str, str]:
    created = _EPOCH + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
    updated = created + timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
    return {"created_at": _timestamp(created), "updated_at": _timestamp(updated)}


def _maybe(rng: random.Random, share_null: float, value: Any) -> Any:
    return None if rng.random() < share_null else value


def _person(rng: random.Random, record_id: int) -> dict[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{first}.{last}.{record_id}@example.com".lower(),
    }


def _account(rng: random.Random, record_id: int, sizes: Mapping[str, int]) -> Record:
    city, country = rng.choice(_CITIES)
    address = {
        "street": f"{rng.randrange(1, 300)} Main Street",
        "city": city,
        "postal_code": f"{rng.randrange(10000, 99999)}",
        "country": country,
    }
    revenue = round(rng.uniform(1e5, 5e7), 2)
    return {
        "id": record_id,
        "name": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_SUFFIX)}",
        "industry": rng.choice(_INDUSTRIES),
        "website": f"https://account{record_id}.example.com",
        "phone": _maybe(rng, 0.1, f"+1-555-{rng.randrange(1000, 9999)}"),
        "status": rng.choice(("active", "active", "prospect", "churned")),
        "annual_revenue": _maybe(rng, 0.15, revenue),
        "currency": rng.choice(_CURRENCIES),
        "employee_count": _maybe(rng, 0.1, rng.randrange(1, 20000)),
        "parent_account_id": None,  # documented, never set here: an all-null column
        "acme_owner_id": rng.randrange(1, 25),  # vendor-branded; the warehouse calls it owner_id
        "address": _maybe(rng, 0.05, address),
        "tags": rng.sample(_TAGS, rng.randrange(0, 4)),
        **_stamps(rng),
    }


def _account_link(rng: random.Random, sizes: Mapping[str, int]) -> int | None:
    accounts = sizes.get("account", 0)
    return rng.randrange(1, accounts + 1) if accounts else None


def _contact(rng: random.Random, record_id: int, sizes: Mapping[str, int]) -> Record:
    return {
        "id": record_id,
        "account_id": _maybe(rng, 0.05, _account_link(rng, sizes)),
        **_person(rng, record_id),
        "phone": _maybe(rng, 0.3, f"+1-555-{rng.randrange(1000, 9999)}"),
        "title": _maybe(rng, 0.2, rng.choice(("CTO", "VP Sales", "Engineer", "Buyer"))),
        "status": rng.choice(("active", "active", "inactive", "bounced")),
        "acme_owner_id": rng.randrange(1, 25),
        **_stamps(rng),
    }


def _lead(rng: random.Random, record_id: int, sizes: Mapping[str, int]) -> Record:
    return {
        "id": record_id,
        **_person(rng, record_id),
        "company": f"{rng.choice(_WORDS)} {rng.choice(_SUFFIX)}",
        "source": rng.choice(("web", "referral", "event", "outbound")),
        "status": rng.choice(("new", "contacted", "qualified", "disqualified")),
        "score": rng.randrange(0, 101),
        "acme_owner_id": _maybe(rng, 0.1, rng.randrange(1, 25)),
        "tags": rng.sample(_TAGS, rng.randrange(0, 3)),
        **_stamps(rng),
    }


def _opportunity(rng: random.Random, record_id: int, sizes: Mapping[str, int]) -> Record:
    stage = rng.choice(_STAGES)
    close = _EPOCH + timedelta(days=rng.randrange(0, 540))
    contacts = sizes.get("contact", 0)
    return {
        "id": record_id,
        "customer_id": _account_link(rng, sizes),
        "contact_id": _maybe(rng, 0.3, rng.randrange(1, contacts + 1) if contacts else None),
        "name": f"{rng.choice(_WORDS)} deal {record_id}",
        "stage": stage,
        "amount": round(rng.uniform(500, 250000), 2),
        "currency": rng.choice(_CURRENCIES),
        "probability": rng.choice((0.1, 0.25, 0.5, 0.75, 0.9)),
        "close_date": close.date().isoformat(),
        "is_closed": stage.startswith("closed_"),
        "acme_owner_id": rng.randrange(1, 25),
        **_stamps(rng),
    }


_GENERATORS: dict[str, Callable[[random.Random, int, Mapping[str, int]], Record]] = {
    "account": _account,
    "contact": _contact,
    "lead": _lead,
    "opportunity": _opportunity,
}


def generate_records(
    resource: str, count: int, seed: int, sizes: Mapping[str, int]
) -> list[Record]:
    """Records 1..count of one resource; the same seed always gives the same records."""
    rng = random.Random(f"{seed}:{resource}")
    return [_GENERATORS[resource](rng, record_id, sizes) for record_id in range(1, count + 1)]


def _price_in_account_currency(
    opportunities: list[Record], accounts: list[Record], seed: int
) -> None:
    """Most deals are priced in their account's currency, as in a real CRM; some are not."""
    rng = random.Random(f"{seed}:currency")
    currency = {account["id"]: account["currency"] for account in accounts}
    for deal in opportunities:
        if deal["customer_id"] in currency and rng.random() < 0.85:
            deal["currency"] = currency[deal["customer_id"]]


def _instant(stamp: Any) -> datetime | None:
    """An ISO 8601 `updated_at` as an aware instant (no zone: UTC), None if it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _changed_since(record: Record, since: datetime | None) -> bool:
    if since is None:
        return True
    moment = _instant(record.get("updated_at"))
    return moment is not None and moment >= since


def _newest_first_key(record: Record) -> tuple[str, str]:
    """Orders by instant, not spelling (the edge dialect mixes zones and forms); a stamp that
    does not parse sorts by its text, as before."""
    stamp = record.get("updated_at")
    moment = _instant(stamp)
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else str(stamp)
    return text, str(record.get("id"))


def _json_default(value: Any) -> Any:
    """orjson has no Decimal: written as a bare JSON number with every digit (edge money)."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(payload: Any) -> bytes:
    """JSON bytes as the sandbox sends them: uint64 ints, NULs, and Decimals kept exact."""
    return orjson.dumps(payload, default=_json_default)


class UnknownRecordError(KeyError):
    """Raised when a test or admin call names a record the store does not hold."""


class CrmStore:
    """In-memory CRM data in id order, so offset paging is stable; safe to mutate between syncs."""

    def __init__(
        self,
        records_per_resource: int | Mapping[str, int] = DEFAULT_RECORDS_PER_RESOURCE,
        seed: int = 42,
        dialect: str = "default",
    ) -> None:
        if dialect not in SHAPES:
            raise ValueError(f"unknown dialect {dialect!r}; one of {', '.join(SHAPES)}")
        self.dialect = dialect
        self._shape = SHAPES[dialect]
        if isinstance(records_per_resource, int):
            sizes = dict.fromkeys(SANDBOX_RESOURCES, records_per_resource)
        else:
            sizes = {name: records_per_resource.get(name, 0) for name in SANDBOX_RESOURCES}
        self._lock = threading.Lock()
        generated = {name: generate_records(name, sizes[name], seed, sizes) for name in sizes}
        _price_in_account_currency(generated["opportunity"], generated["account"], seed)
        # Keyed by id; records put in raw (maybe without an id) get negative keys. Each default
        # record is let go once shaped, so a store never holds both dialects' records at once.
        self._records: dict[str, dict[int, Record]] = {}
        for name in SANDBOX_RESOURCES:
            plain, table = generated.pop(name), {}
            plain.reverse()  # popped from the end: in id order
            while plain:
                record = plain.pop()
                table[record["id"]] = self._shape(name, record)
            self._records[name] = table
        self._raw_keys = itertools.count(-1, -1)
        # Filtered / sorted listings, kept until the next write: paging one filter must not
        # rescan every record per page.
        self._listings: dict[tuple[str, bool, datetime | None], list[Record]] = {}

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(self._records)

    def page(
        self,
        resource: str,
        offset: int,
        limit: int,
        newest_first: bool = False,
        updated_since: datetime | None = None,
    ) -> tuple[list[Record], int]:
        """One page in id order (or newest `updated_at` first), and the total at that moment.

        With `updated_since`, only records changed at or after it are listed and counted.
        """
        with self._lock:
            records, total = self._page_unlocked(
                resource, offset, limit, newest_first, updated_since
            )
            return copy.deepcopy(records), total

    def _page_unlocked(
        self,
        resource: str,
        offset: int,
        limit: int,
        newest_first: bool,
        updated_since: datetime | None,
    ) -> tuple[list[Record], int]:
        table = self._records[resource]  # insertion order is id order: ids only grow
        if updated_since is None and not newest_first:
            return list(islice(table.values(), offset, offset + limit)), len(table)
        key = (resource, newest_first, updated_since)
        rows = self._listings.get(key)
        if rows is None:
            rows = [r for r in table.values() if _changed_since(r, updated_since)]
            if newest_first:
                rows.sort(key=_newest_first_key, reverse=True)
            self._listings[key] = rows
        return rows[offset : offset + limit], len(rows)

    def page_body(
        self,
        resource: str,
        offset: int,
        limit: int,
        newest_first: bool = False,
        updated_since: datetime | None = None,
    ) -> bytes:
        """`page` as the JSON body `{"data": [...], "total": N}`, serialised under the lock (a
        snapshot without copying every record: the sandbox must not be the slow side)."""
        with self._lock:
            records, total = self._page_unlocked(
                resource, offset, limit, newest_first, updated_since
            )
            return dumps({"data": records, "total": total})

    def records(self, resource: str) -> list[Record]:
        """Every record of a resource, in id order (a copy: tests compare against it)."""
        return self.page(resource, 0, self.total(resource))[0]

    def total(self, resource: str) -> int:
        with self._lock:
            return len(self._records[resource])

    def insert(self, resource: str, fields: Mapping[str, Any]) -> Record:
        """Adds a generated record with the next id, `fields` on top, and fresh timestamps."""
        with self._lock:
            self._listings.clear()
            table = self._records[resource]
            record_id = max(max(table, default=0), 0) + 1
            sizes = {name: len(records) for name, records in self._records.items()}
            generated = _GENERATORS[resource](random.Random(record_id), record_id, sizes)
            now = _timestamp(datetime.now(UTC))
            stamps = {"id": record_id, "created_at": now, "updated_at": now}
            # `fields` are in the store's dialect; they never replace the id or the stamps.
            own = {k: v for k, v in fields.items() if k not in stamps}
            record = {**self._shape(resource, {**generated, **stamps}), **own}
            table[record_id] = record
            return copy.deepcopy(record)

    def update(self, resource: str, record_id: int, fields: Mapping[str, Any]) -> Record:
        """Changes fields of a record and moves its `updated_at` forward."""
        with self._lock:
            self._listings.clear()
            table = self._records[resource]
            if record_id not in table:
                raise UnknownRecordError(f"{resource} {record_id}")
            table[record_id].update({k: v for k, v in fields.items() if k != "id"})
            table[record_id]["updated_at"] = _timestamp(datetime.now(UTC))
            return copy.deepcopy(table[record_id])

    def put_raw(self, resource: str, record: Mapping[str, Any]) -> int:
        """Serves `record` exactly as given (no id, wrong types...); returns a key to delete it."""
        with self._lock:
            self._listings.clear()
            key = next(self._raw_keys)
            self._records[resource][key] = copy.deepcopy(dict(record))
            return key

    def churn(self, rng: random.Random) -> tuple[str, int]:
        """One plausible change somewhere (an update, sometimes an insert), for `make dev`."""
        resource = rng.choice(self.resources)
        if rng.random() < 0.25 or not self.total(resource):
            fresh = _next_stage(None, rng) if resource == "opportunity" else {"status": "new"}
            return resource, self.insert(resource, fresh)["id"]
        with self._lock:
            record_id = rng.choice([key for key in self._records[resource] if key > 0])
            stage = self._records[resource][record_id].get("stage")
        if resource == "opportunity":  # deals move through their stages (history mode shows it)
            fields = _next_stage(stage, rng)
        else:
            fields = {"status": rng.choice(("active", "qualified", "churned"))}
        self.update(resource, record_id, fields)
        return resource, record_id

    def advance_stages(self, deals: int) -> int:
        """Moves the first `deals` opportunities on to their next stage; returns how many."""
        with self._lock:
            ids = sorted(key for key in self._records["opportunity"] if key > 0)[:deals]
            stages = {i: self._records["opportunity"][i].get("stage") for i in ids}
        rng = random.Random(0)
        for record_id, stage in stages.items():
            self.update("opportunity", record_id, _next_stage(stage, rng))
        return len(stages)

    def delete(self, resource: str, record_id: int) -> None:
        with self._lock:
            self._listings.clear()
            if self._records[resource].pop(record_id, None) is None:
                raise UnknownRecordError(f"{resource} {record_id}")
