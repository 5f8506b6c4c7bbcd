"""How the sandbox spells its records: its own dialect, a foreign CRM's, or edge cases, for tests.

The `foreign` dialect is a CRM our declared schema was not written for, HubSpot-like: ids, links
and numbers as strings, booleans as "true"/"false", creation times as epoch seconds, statuses
sometimes null, no opportunity `stage` at all, an extra nested `metadata` object, and the owner
under a vendor prefix (`hs_owner_id`).

The `edge` dialect (crm_sandbox.edge) keeps our field names but sends what real vendor payloads
carry: uint64 / past-2^53 / UUID ids, NULs, emoji and right-to-left names, kB-sized notes, every
ISO 8601 timestamp spelling, money beyond a float's digits, empty-string enums, odd nested keys.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from crm_sandbox.edge import to_edge

Record = dict[str, Any]
DIALECTS = ("default", "foreign", "edge")

_LINKS = ("account_id", "customer_id", "contact_id", "parent_account_id")
_MONEY = ("annual_revenue", "amount")
_COUNTS = ("employee_count", "score")
_REGIONS = ("emea", "amer", "apac")
FOREIGN_NULL_STATUS_SHARE = 0.1


def _string(value: Any) -> str | None:
    return None if value is None else str(value)


def _epoch_seconds(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def to_foreign(resource: str, record: Record) -> Record:
    """The same CRM record as the foreign dialect serves it (deterministic per resource and id)."""
    rng = random.Random(f"foreign:{resource}:{record.get('id')}")
    shaped: Record = {}
    for field, value in record.items():
        if field == "id" or field in _LINKS or field in _COUNTS:
            shaped[field] = _string(value)
        elif field in _MONEY:
            shaped[field] = None if value is None else f"{value:.2f}"
        elif field == "is_closed":
            shaped[field] = "true" if value else "false"
        elif field == "created_at":
            shaped[field] = _epoch_seconds(value)
        elif field == "status":
            shaped[field] = None if rng.random() < FOREIGN_NULL_STATUS_SHARE else value
        elif field == "acme_owner_id":
            shaped["hs_owner_id"] = value
        elif field != "stage":
            shaped[field] = value
    shaped["metadata"] = {"source_system": "foreign-crm", "region": rng.choice(_REGIONS)}
    return shaped


def _as_is(resource: str, record: Record) -> Record:
    return record


SHAPES: dict[str, Callable[[str, Record], Record]] = {
    "default": _as_is,
    "foreign": to_foreign,
    "edge": to_edge,
}
