"""`crm-assets schema infer`: the declared schema, derived from what the CRM API really sends.

Reads a sample of each resource (the first pages, or all of them), flattens nested objects as
dlt does, and writes per field the observed type and nullability. It starts from the file in
force, so a regenerated file differs only where the API did: descriptions, renames and any
declared type that every sampled value still fits without loss are kept.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import yaml
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from requests import HTTPError, RequestException, Session

from crm_assets.source.contract import API_KEY_PARAM, endpoint_path
from crm_assets.source.errors import CrmResponseError
from crm_assets.source.paging import CrmOffsetPaginator
from crm_assets.source.schema import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    DELETED_AT,
    MAX_DECIMAL_PRECISION,
    PRIMARY_KEY,
    Column,
    CrmSchema,
)
from crm_assets.source.types import TYPES, decimal_digits, fits

_WIDE_ID_PRECISION = 20  # every unsigned 64-bit id

DEFAULT_SAMPLE_PAGES = 5
# A vendor prefix: a short lowercase word, then the neutral name (`hs_owner_id`, `sf_region`).
_VENDOR_PREFIX = re.compile(r"([a-z]{2,12})_([a-z][a-z0-9_]*)")
_KNOWN_VENDORS = {"acme", "hs", "hubspot", "sf", "salesforce", "pd", "pipedrive", "zoho"}


class InferenceError(Exception):
    """The sample could not be read; names resource, path and offset, never the key."""


def fetch_records(
    session: Session,
    base_url: str,
    api_key: str,
    resource: str,
    page_size: int,
    max_pages: int | None,
    timeout_s: float = 30.0,
) -> Iterator[dict[str, Any]]:
    """Records of one resource, read as the sync reads them: dlt's REST client with the sync's
    paginator, so a page the sync would refuse fails the sample too."""
    path = endpoint_path(resource)
    client = RESTClient(
        base_url,
        auth=APIKeyAuth(name=API_KEY_PARAM, api_key=api_key, location="query"),
        paginator=CrmOffsetPaginator(page_size),
        data_selector="data",
        session=session,
    )
    pages = client.paginate(path, timeout=timeout_s)
    try:
        for number, page in enumerate(pages, start=1):
            yield from page
            if max_pages is not None and number >= max_pages:
                return
    except CrmResponseError as error:  # names path and offset, never the key
        raise InferenceError(f"sample of {resource!r}: {error}") from None
    except HTTPError as error:  # its text holds the URL, key included
        status = error.response.status_code if error.response is not None else "?"
        raise InferenceError(
            f"sample of {resource!r} (GET {path}) answered HTTP {status}"
        ) from None
    except RequestException as error:
        raise InferenceError(
            f"sample of {resource!r} (GET {path}) failed: {type(error).__name__}"
        ) from None


_NAMING = NamingConvention()


def column_name(path: tuple[str, ...]) -> str:
    """The column dlt makes of an API field path: snake_case parts joined by `__`."""
    return "__".join(_NAMING.normalize_identifier(part) for part in path)


def flatten(
    record: Mapping[str, Any], renames: Mapping[str, str], spelled: dict[str, str] | None = None
) -> dict[str, Any]:
    """API record -> {column: value}: objects flattened into `a__b`, renamed fields neutral.

    A field whose column name differs from its API spelling (`ownerId` -> `owner_id`) is noted
    in `spelled`, so the schema can map it back.
    """
    flat: dict[str, Any] = {}

    def walk(value: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for key, item in value.items():
            path = (*prefix, str(key))
            dotted = ".".join(path)
            if dotted in renames:
                flat[renames[dotted]] = item
            elif isinstance(item, dict) and item:
                walk(item, path)
            else:
                name = column_name(path)
                if spelled is not None and name.replace("__", ".") != dotted:
                    spelled[dotted] = name
                flat[name] = item

    walk(record, ())
    return flat


def observed_type(value: Any) -> str:
    """The dlt type a non-null JSON value shows by itself (strings stay text unless ISO times)."""
    return next(row.name for row in TYPES.values() if row.recognises(value))


def _join(types: Iterable[str]) -> str:
    kinds = set(types)
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= _NUMBERS.keys():
        return max(kinds, key=_NUMBERS.__getitem__)
    return "json" if "json" in kinds else "text"


@dataclass
class FieldStats:
    """What the sample showed of one field."""

    present: int = 0
    nulls: int = 0
    types: Counter[str] = field(default_factory=Counter)
    unfit_for_declared: int = 0
    whole_digits: int = 0  # the most digits before the point any number had
    scale: int = 0  # the most digits after it (trailing zeros not counted)


@dataclass
class ResourceSample:
    """A resource's sampled records, folded into per-field stats as they stream past."""

    resource: str
    declared: Mapping[str, Column]
    records: int = 0
    fields: dict[str, FieldStats] = field(default_factory=dict)
    spelled: dict[str, str] = field(default_factory=dict)  # API field -> column, if they differ

    def add_record(self, record: Mapping[str, Any], renames: Mapping[str, str]) -> None:
        self.add(flatten(record, renames, self.spelled))

    def add(self, flat: Mapping[str, Any]) -> None:
        self.records += 1
        for name, value in flat.items():
            stats = self.fields.setdefault(name, FieldStats())
            stats.present += 1
            if value is None:
                stats.nulls += 1
                continue
            stats.types[observed_type(value)] += 1
            # numbers only: digit strings are text unless declared otherwise
            numeric = type(value) is not bool and type(value) is not str
            if numeric and (digits := decimal_digits(value)) is not None:
                stats.whole_digits = max(stats.whole_digits, digits[0])
                stats.scale = max(stats.scale, digits[1])
            column = self.declared.get(name)
            if column is not None and not fits(value, column):
                stats.unfit_for_declared += 1

    def columns(self) -> dict[str, dict[str, Any]]:
        """The table's columns for the file: known ones in their order, then new ones."""
        order = [n for n in self.declared if n in self.fields]
        order += [n for n in self.fields if n not in self.declared and not self._null_parent(n)]
        if PRIMARY_KEY in order:
            order.remove(PRIMARY_KEY)
        return {name: self._column(name) for name in [PRIMARY_KEY, *order]}

    def _null_parent(self, name: str) -> bool:
        """An object that was null where others had fields: its `name__*` columns stand for it."""
        return not self.fields[name].types and any(f.startswith(f"{name}__") for f in self.fields)

    def _column(self, name: str) -> dict[str, Any]:
        stats = self.fields.get(name, FieldStats())
        declared = self.declared.get(name)
        seen = _join(stats.types) if stats.types else None
        digits: tuple[int, int] | None = None
        if name == PRIMARY_KEY:
            # Ids are kept exactly as the API sends them: its type, never a conversion.
            data_type = seen or (declared.data_type if declared else "bigint")
            if data_type == "decimal":
                data_type, digits = _wide_id(stats)
        elif declared is not None and stats.unfit_for_declared == 0:
            data_type = declared.data_type  # a reviewed type every sampled value still fits
            digits = declared.digits if data_type == "decimal" else None
        elif declared is not None and declared.data_type == "decimal" and seen in _NUMBERS:
            data_type, digits = _widened(stats, declared.digits)  # money with more digits
        else:
            data_type = seen or "text"
            if data_type == "decimal" and not stats.scale and set(stats.types) <= _INTEGERS:
                data_type, digits = _wide_id(stats)  # integers past 64 bits: ids, links
            elif data_type == "decimal":
                data_type, digits = _widened(stats, (DECIMAL_PRECISION, DECIMAL_SCALE))
        nullable = True
        if name == PRIMARY_KEY:
            nullable = False
        elif declared is not None and not declared.nullable:
            nullable = stats.nulls > 0 or stats.present < self.records
        column: dict[str, Any] = {"data_type": data_type, "nullable": nullable}
        if digits is not None and digits != (DECIMAL_PRECISION, DECIMAL_SCALE):
            column["precision"], column["scale"] = digits
        if name == PRIMARY_KEY:
            column["primary_key"] = True
        if declared is not None and declared.description:
            column["description"] = declared.description
        return column

    def dropped(self) -> list[str]:
        """Declared fields no sampled record carried."""
        return [n for n in self.declared if n not in self.fields and n != PRIMARY_KEY]


_NUMBERS = {row.name: row.number_rank for row in TYPES.values() if row.number_rank is not None}
# numbers kept exactly: with no digits after the point, integers
_INTEGERS = {name for name in _NUMBERS if not pa.types.is_floating(TYPES[name].arrow)}


def _widened(stats: FieldStats, digits: tuple[int, int]) -> tuple[str, tuple[int, int] | None]:
    """A decimal wide enough for every sampled number and for `digits` (the declared one's):
    text, which keeps every digit, when no decimal the warehouse has holds them all."""
    precision, scale = digits
    whole = max(precision - scale, stats.whole_digits)
    scale = max(scale, stats.scale)
    # Too wide together: first give up room before the point the sample did not need, then
    # decimals it did not need.
    if whole + scale > MAX_DECIMAL_PRECISION:
        whole = max(stats.whole_digits, MAX_DECIMAL_PRECISION - scale)
    if whole + scale > MAX_DECIMAL_PRECISION:
        scale = max(stats.scale, MAX_DECIMAL_PRECISION - whole)
    if whole + scale > MAX_DECIMAL_PRECISION:
        return "text", None
    return "decimal", (whole + scale, scale)


def _wide_id(stats: FieldStats) -> tuple[str, tuple[int, int] | None]:
    """Integers past 64 bits (ids and the links to them): a decimal without decimals that
    holds them all, so ids and links compare and join as the same numbers."""
    precision = max(_WIDE_ID_PRECISION, stats.whole_digits)
    if precision > MAX_DECIMAL_PRECISION or stats.scale:
        return "text", None
    return "decimal", (precision, 0)


def suggest_renames(
    samples: Iterable[ResourceSample], renames: Mapping[str, str]
) -> dict[str, str]:
    """Vendor-prefixed fields and the neutral name they likely stand for (never applied).

    A prefix counts when it is a known vendor's, or when the rest of the name is a declared
    column that the same sample no longer carries (`hs_owner_id` where `owner_id` went missing).
    """
    suggestions: dict[str, str] = {}
    for sample in samples:
        missing = set(sample.dropped())
        for name in sample.fields:
            match = _VENDOR_PREFIX.fullmatch(name)
            if not match or name in renames or name in sample.declared:
                continue
            vendor, rest = match.groups()
            if vendor in _KNOWN_VENDORS or rest in missing:
                suggestions[name] = rest
    return dict(sorted(suggestions.items()))


_HEADER = (
    "The declared schema of the CRM tables: per resource, each column's dlt data type, whether"
    " it may be null, and what it means. Written by `crm-assets schema infer` from {origin};"
    " {sampled}. Review it like code: regenerating keeps descriptions, `renames` and any type"
    " that every sampled value still fits losslessly, so a diff shows what the API changed."
    " `renames` maps API fields (dots into objects) to neutral warehouse names in every table;"
    " `suggested_renames` lists vendor-prefixed fields: move an entry to `renames` to adopt it."
)


def render(
    samples: list[ResourceSample],
    base: CrmSchema,
    origin: str,
    suggestions: Mapping[str, str],
) -> str:
    """The schema file's text: a header, then dlt's layout (tables -> columns -> hints)."""
    sampled = ", ".join(f"{s.resource} {s.records}" for s in samples)
    renames = dict(base.renames)
    for sample in samples:
        renames.update(sample.spelled)
    document: dict[str, Any] = {"name": "crm", "renames": renames}
    if suggestions:
        document["suggested_renames"] = dict(suggestions)
    document["tables"] = {s.resource: {"columns": s.columns()} for s in samples}
    body = yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
    header = _HEADER.format(origin=origin, sampled=f"records sampled: {sampled}")
    lines = textwrap.wrap(header, width=98, initial_indent="# ", subsequent_indent="# ")
    return "\n".join(lines) + "\n" + body


def origin_of(base_url: str) -> str:
    """The API's host for the header: no path, no query, never a key."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.hostname}" if parts.hostname else "the configured API"


def sample_resource(
    resource: str, records: Iterable[dict[str, Any]], base: CrmSchema
) -> ResourceSample:
    declared = {c.name: c for c in base.columns(resource) if c.name != DELETED_AT}
    sample = ResourceSample(resource, declared)
    for record in records:
        sample.add_record(record, base.renames)
    return sample


@dataclass(frozen=True)
class Inference:
    """One run of `schema infer`: the file's text and what the sample showed."""

    text: str
    samples: list[ResourceSample]
    suggestions: dict[str, str]


def infer_schema(
    session: Session,
    base_url: str,
    api_key: str,
    resources: Iterable[str],
    base: CrmSchema,
    max_pages: int | None = DEFAULT_SAMPLE_PAGES,
    page_size: int = 100,
) -> Inference:
    """Samples every resource and renders the schema file, starting from `base`."""
    samples = [
        sample_resource(
            name, fetch_records(session, base_url, api_key, name, page_size, max_pages), base
        )
        for name in resources
    ]
    suggestions = suggest_renames(samples, base.renames)
    return Inference(render(samples, base, origin_of(base_url), suggestions), samples, suggestions)
