"""The `edge` dialect: what real vendor payloads carry and the sandbox's own dialect never sends.

Each edge record is a default record reshaped, deterministic per resource and id, keeping every
field and every instant, so a test can map a plain record to its edge twin:

- ids: uint64 numbers above 2^63 (accounts, opportunities), integers past 2^53 (contacts), UUID
  strings (leads); links use the mapping of the record they point at (`edge_id`);
- names: sometimes a NUL, an emoji, combining marks, right-to-left words or a zero-width joiner;
- `notes`: 1.5-3.5 kB of text on every record, 20-60 kB on ~1%;
- timestamps: every ISO 8601 / RFC 3339 spelling (`Z`, `+00:00`, other offsets, fractions, a
  space for `T`, no zone meaning UTC); `created_at` sometimes "";
- money: 6 decimals, 16-digit integers, or 16 digits plus 2 decimals (a `Decimal`: a float would
  lose digits);
- `status` / `currency` sometimes "";
- `x_vendor_extra` on some accounts and contacts: keys with spaces, punctuation, non-ASCII letters.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

Record = dict[str, Any]

# ids: account / opportunity above 2^63 (below 2^64 for plain ids up to ~5.6e13), contact past 2^53
ACCOUNT_ID_OFFSET = 18_000_000_000_000_000_000
ACCOUNT_ID_STEP = 7919
OPPORTUNITY_ID_OFFSET = 12_000_000_000_000_000_000
OPPORTUNITY_ID_STEP = 6007
CONTACT_ID_OFFSET = 2**53
CONTACT_ID_STEP = 104_729
_LINK_TARGETS = {
    "account_id": "account",
    "customer_id": "account",
    "parent_account_id": "account",
    "contact_id": "contact",
}

# shares, each drawn per record
ODD_NAME_SHARE = 0.10  # one oddity, the same in every name-like field of the record
EMPTY_CREATED_AT_SHARE = 0.02
EMPTY_STATUS_SHARE = 0.05
EMPTY_CURRENCY_SHARE = 0.03
LONG_NOTES_SHARE = 0.01
VENDOR_EXTRA_SHARE = 0.05
MONEY_SIX_DECIMALS_SHARE = 0.30
MONEY_BIG_INTEGER_SHARE = 0.10
MONEY_BIG_DECIMAL_SHARE = 0.05

NAME_FIELDS = ("name", "first_name", "last_name", "company")
MONEY_FIELDS = ("annual_revenue", "amount")
STAMP_FIELDS = ("created_at", "updated_at")
VENDOR_EXTRA_RESOURCES = ("account", "contact")
# dlt's snake_case names them stra_e, zip_code, rating_1_5x, _ber_score, x, nom_de_soci_tx,
# vat_id: distinct (two keys in Cyrillic only would both become `x`)
VENDOR_EXTRA_KEYS = (
    "Straße",
    "zip code",
    "rating (1-5)",
    "über-score",
    "ключ",
    "nom de société",
    "VAT-ID",
)

_RTL_WORDS = ("شركة النور", "مرحبا بالعالم", "חברה בע״מ", "שלום עולם")
_ODDITIES: dict[str, Callable[[str, str], str]] = {
    "nul": lambda name, rtl: f"{name[: len(name) // 2]}\u0000{name[len(name) // 2 :]}",
    "emoji": lambda name, rtl: f"{name} 🚀",
    "combining": lambda name, rtl: f"{name} Cafe\u0301 Zu\u0308rich",
    "rtl": lambda name, rtl: f"{name} {rtl}",
    "zwj": lambda name, rtl: f"{name} 👩\u200d💻",
}
ODDITY_KINDS = tuple(_ODDITIES)


@dataclass(frozen=True)
class StampForm:
    """One spelling of an instant: separator, fraction digits, and zone (z, utc, offset, naive)."""

    name: str
    sep: str
    timespec: str
    zone: str


# (form, share): one form per record, for both created_at and updated_at
STAMP_FORMS: tuple[tuple[StampForm, float], ...] = (
    (StampForm("z", "T", "seconds", "z"), 0.25),  # 2024-03-01T10:00:00Z
    (StampForm("utc_offset", "T", "seconds", "utc"), 0.10),  # 2024-03-01T10:00:00+00:00
    (StampForm("offset", "T", "seconds", "offset"), 0.15),  # 2024-03-01T15:30:00+05:30
    (StampForm("millis_z", "T", "milliseconds", "z"), 0.10),  # 2024-03-01T10:00:00.000Z
    (StampForm("micros_utc", "T", "microseconds", "utc"), 0.10),  # ...T10:00:00.000000+00:00
    (StampForm("micros_offset", "T", "microseconds", "offset"), 0.05),  # ...00.000000-08:00
    (StampForm("space_utc", " ", "seconds", "utc"), 0.10),  # 2024-03-01 10:00:00+00:00
    (StampForm("naive", "T", "seconds", "naive"), 0.10),  # 2024-03-01T10:00:00 (UTC)
    # 2024-03-01 10:00:00.000 (UTC)
    (StampForm("space_naive_millis", " ", "milliseconds", "naive"), 0.05),
)
STAMP_OFFSETS = tuple(
    timedelta(hours=h, minutes=m) for h, m in ((5, 30), (-8, 0), (9, 0), (-3, -30), (5, 45), (1, 0))
)

_NOTE_WORDS = (
    "call",
    "customer",
    "renewal",
    "contract",
    "invoice",
    "pricing",
    "discount",
    "meeting",
    "follow-up",
    "decision-maker",
    "procurement",
    "onboarding",
    "churn-risk",
    "quarterly",
    "naïve",
    "façade",
    "Zürich",
    "São Paulo",
    "東京",
    "서울",
    "Москва",
    "🚀",
    "👍🏽",
    '"quoted"',
    "back\\slash",
    "<b>html</b>",
    "&amp;",
    "100%",
    "tab\there",
    "line\nbreak",
    "CRLF\r\n",
)
NOTES_POOL_SIZE = 64
LONG_NOTES_POOL_SIZE = 16
NOTES_BYTES = (1500, 3500)
LONG_NOTES_BYTES = (20_000, 60_000)


def edge_id(resource: str, plain_id: int) -> int | str:
    """The edge id of the record (or link to it) whose default-dialect id is `plain_id`."""
    if resource == "account":
        return ACCOUNT_ID_OFFSET + plain_id * ACCOUNT_ID_STEP
    if resource == "opportunity":
        return OPPORTUNITY_ID_OFFSET + plain_id * OPPORTUNITY_ID_STEP
    if resource == "contact":
        return CONTACT_ID_OFFSET + plain_id * CONTACT_ID_STEP
    if resource == "lead":
        bits = random.Random(f"edge-id:lead:{plain_id}").getrandbits(128)
        return str(uuid.UUID(int=bits, version=4))
    raise ValueError(f"no edge id for resource {resource!r}")


def _text(rng: random.Random, size: int) -> str:
    """Words up to `size` UTF-8 bytes (a multi-byte character is never split)."""
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_NOTE_WORDS)
        words.append(word)
        length += len(word.encode()) + 1
    return " ".join(words).encode()[:size].decode(errors="ignore")


@functools.cache
def notes_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Shared note texts (normal, long): records point at these, so 200,000 records of 2-4 kB
    on the wire hold a few MB of strings, not 600 MB."""
    rng = random.Random("edge:notes-pool")
    normal = tuple(_text(rng, rng.randint(*NOTES_BYTES)) for _ in range(NOTES_POOL_SIZE))
    long = tuple(_text(rng, rng.randint(*LONG_NOTES_BYTES)) for _ in range(LONG_NOTES_POOL_SIZE))
    return normal, long


def render_stamp(stamp: str, form: StampForm, offset: timedelta) -> str:
    """The instant `stamp` spelt in `form`; fraction digits grow if the instant needs them."""
    moment = datetime.fromisoformat(stamp)
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    timespec = form.timespec
    if moment.microsecond % 1000:
        timespec = "microseconds"
    elif moment.microsecond and timespec == "seconds":
        timespec = "milliseconds"
    if form.zone == "naive":
        return moment.replace(tzinfo=None).isoformat(form.sep, timespec)
    if form.zone == "offset":
        return moment.astimezone(timezone(offset)).isoformat(form.sep, timespec)
    text = moment.isoformat(form.sep, timespec)
    return text.removesuffix("+00:00") + "Z" if form.zone == "z" else text


def _money(value: Any, draw: float, rng: random.Random) -> Any:
    """A money value as vendors send it: converted (6 decimals), IDR/VND-sized, or beyond float."""
    if not isinstance(value, int | float):
        return value
    if draw < MONEY_SIX_DECIMALS_SHARE:  # integer part kept; last decimal never 0
        fraction = rng.randrange(10**5) * 10 + rng.randrange(1, 10)
        return float(f"{int(value)}.{fraction:06d}")
    draw -= MONEY_SIX_DECIMALS_SHARE
    if draw < MONEY_BIG_INTEGER_SHARE:
        return rng.randrange(10**15, 10**16)
    draw -= MONEY_BIG_INTEGER_SHARE
    if draw < MONEY_BIG_DECIMAL_SHARE:  # 18 significant digits: a float keeps 15-17
        return Decimal(f"{rng.randrange(10**15, 10**16)}.{rng.randrange(1, 100):02d}")
    return value


def money_kind(value: Any) -> str:
    """Which kind of edge money `value` is: none, plain, six_decimals, big_integer, big_decimal."""
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return "big_decimal"
    if isinstance(value, int):
        return "big_integer"
    digits = repr(value).partition(".")[2]
    return "six_decimals" if len(digits) == 6 else "plain"


def _vendor_extra(rng: random.Random) -> Record:
    values: list[Any] = [
        f"Hauptstraße {rng.randrange(1, 200)}",
        f"{rng.randrange(10000, 99999)}",
        rng.randrange(1, 6),
        round(rng.random(), 2),
        rng.choice(("значение", "другое значение")),
        rng.choice(("Société Générale", "Crème & Brûlée SARL", "Ça Va SA")),
        f"DE{rng.randrange(10**8, 10**9)}",
    ]
    return dict(zip(VENDOR_EXTRA_KEYS, values, strict=True))


def _pick_form(rng: random.Random) -> StampForm:
    draw = rng.random()
    for form, share in STAMP_FORMS:
        if draw < share:
            return form
        draw -= share
    return STAMP_FORMS[0][0]


def to_edge(resource: str, record: Record) -> Record:
    """The same CRM record as the edge dialect serves it (deterministic per resource and id)."""
    rng = random.Random(f"edge:{resource}:{record.get('id')}")
    # drawn up front in one order, whatever fields the record has (money's digits come last)
    form, offset = _pick_form(rng), rng.choice(STAMP_OFFSETS)
    oddity = rng.choice(ODDITY_KINDS) if rng.random() < ODD_NAME_SHARE else None
    rtl_word = rng.choice(_RTL_WORDS)
    emptied = {
        field
        for field, share in (("status", EMPTY_STATUS_SHARE), ("currency", EMPTY_CURRENCY_SHARE))
        if rng.random() < share
    }
    empty_created = rng.random() < EMPTY_CREATED_AT_SHARE
    money_draw = rng.random()
    normal, long = notes_pools()
    notes = rng.choice(long) if rng.random() < LONG_NOTES_SHARE else rng.choice(normal)
    with_extra = resource in VENDOR_EXTRA_RESOURCES and rng.random() < VENDOR_EXTRA_SHARE
    extra = _vendor_extra(rng) if with_extra else None

    shaped: Record = {}
    for field, value in record.items():
        if field == "id" and isinstance(value, int):
            shaped[field] = edge_id(resource, value)
        elif field in _LINK_TARGETS and isinstance(value, int):
            shaped[field] = edge_id(_LINK_TARGETS[field], value)
        elif field in NAME_FIELDS and oddity is not None and isinstance(value, str):
            shaped[field] = _ODDITIES[oddity](value, rtl_word)
        elif field in MONEY_FIELDS:
            shaped[field] = _money(value, money_draw, rng)
        elif field in STAMP_FIELDS and isinstance(value, str) and value:
            shaped[field] = render_stamp(value, form, offset)
        elif field in emptied:
            shaped[field] = ""
        else:
            shaped[field] = value
    if empty_created and "created_at" in shaped:
        shaped["created_at"] = ""
    shaped["notes"] = notes
    if extra is not None:
        shaped["x_vendor_extra"] = extra
    return shaped
