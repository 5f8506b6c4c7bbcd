"""The declared warehouse schema of every CRM table: columns, types, nullability, API names.

One readable place. Nested API objects with a fixed shape (`address`) are flattened into
`<object>__<field>` columns, as dlt would name them; lists (`tags`) stay one JSON column, so a
table never grows child tables. A column whose API field has a vendor-branded name declares it
in `api_name`; the warehouse only ever sees the neutral name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Set by us after a full sync when the API no longer returns the record; NULL while it is live.
DELETED_AT = "_deleted_at"
DECIMAL_PRECISION, DECIMAL_SCALE = 18, 4


@dataclass(frozen=True)
class Column:
    """One warehouse column; `api_name` is the API's field path (dots into objects) if different."""

    name: str
    data_type: str  # a dlt data type: bigint, double, decimal, text, bool, timestamp, date, json
    nullable: bool = True
    description: str = ""
    api_name: str | None = None

    @property
    def api_path(self) -> tuple[str, ...]:
        """Where the value sits in an API record: `address__city` reads `address.city`."""
        return tuple((self.api_name or self.name.replace("__", ".")).split("."))

    def dlt_hint(self) -> dict[str, Any]:
        hint: dict[str, Any] = {
            "name": self.name,
            "data_type": self.data_type,
            "nullable": self.nullable,
        }
        if self.data_type == "decimal":
            hint |= {"precision": DECIMAL_PRECISION, "scale": DECIMAL_SCALE}
        if self.data_type == "timestamp":
            hint["timezone"] = True
        return hint


def _id(description: str) -> Column:
    return Column("id", "bigint", nullable=False, description=description)


def _owner() -> Column:
    return Column(
        "owner_id", "bigint", description="CRM user who owns it", api_name="acme_owner_id"
    )


_STAMPS = (
    Column("created_at", "timestamp", nullable=False, description="Created in the CRM (UTC)"),
    Column("updated_at", "timestamp", nullable=False, description="Last changed in the CRM (UTC)"),
    Column(DELETED_AT, "timestamp", description="When a full sync found it gone from the CRM"),
)

CRM_SCHEMAS: dict[str, tuple[Column, ...]] = {
    "account": (
        _id("Account id in the CRM"),
        Column("name", "text", nullable=False, description="Company name"),
        Column("industry", "text"),
        Column("website", "text"),
        Column("phone", "text"),
        Column("status", "text", nullable=False, description="active, prospect or churned"),
        Column("annual_revenue", "decimal", description="In `currency`"),
        Column("currency", "text", description="ISO 4217 code"),
        Column("employee_count", "bigint"),
        Column("parent_account_id", "bigint", description="Parent account, if any"),
        _owner(),
        Column("address__street", "text"),
        Column("address__city", "text"),
        Column("address__postal_code", "text"),
        Column("address__country", "text", description="ISO 3166 alpha-2"),
        Column("tags", "json", description="JSON array of tag strings"),
        *_STAMPS,
    ),
    "contact": (
        _id("Contact id in the CRM"),
        Column("account_id", "bigint", description="The contact's account"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "text"),
        Column("phone", "text"),
        Column("title", "text"),
        Column("status", "text", nullable=False, description="active, inactive or bounced"),
        _owner(),
        *_STAMPS,
    ),
    "lead": (
        _id("Lead id in the CRM"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "text"),
        Column("company", "text"),
        Column("source", "text", description="web, referral, event or outbound"),
        Column("status", "text", nullable=False, description="new, contacted, qualified, ..."),
        Column("score", "bigint", description="0-100"),
        _owner(),
        Column("tags", "json", description="JSON array of tag strings"),
        *_STAMPS,
    ),
    "opportunity": (
        _id("Opportunity id in the CRM"),
        Column("customer_id", "bigint", description="The account the deal is with"),
        Column("contact_id", "bigint", description="Main contact, if any"),
        Column("name", "text", nullable=False),
        Column("stage", "text", nullable=False, description="prospecting ... closed_won/lost"),
        Column("amount", "decimal", nullable=False, description="Deal value in `currency`"),
        Column("currency", "text", nullable=False, description="ISO 4217 code"),
        Column("probability", "double", description="Win probability, 0-1"),
        Column("close_date", "date", description="Expected or actual close"),
        Column("is_closed", "bool", nullable=False, description="Won or lost"),
        _owner(),
        *_STAMPS,
    ),
}


def declared_columns(resource: str) -> tuple[Column, ...]:
    """The declared columns of a resource; () for a resource nobody declared (it evolves freely)."""
    return CRM_SCHEMAS.get(resource, ())


_DELETED_AT_COLUMN = _STAMPS[-1]


def dlt_columns(resource: str) -> list[dict[str, Any]]:
    """dlt column hints, so every declared column exists with its type even when all-null.

    Every table gets `_deleted_at`, declared or not, since every sync marks deletions.
    """
    columns = declared_columns(resource) or (_DELETED_AT_COLUMN,)
    return [column.dlt_hint() for column in columns]


def rename_map(resource: str) -> dict[str, str]:
    """API field -> warehouse column, for the fields whose API name differs."""
    return {c.api_name: c.name for c in declared_columns(resource) if c.api_name}
