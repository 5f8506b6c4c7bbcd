"""The data types the schema file can declare: one row each, and all the project does with it.

A row gives dlt's name for the type and how an API value converts to it without loss (the
record gate), which arrow type carries it in a batch, how the UI names it, and how
`schema infer` recognises it in a sampled value. Adding a type is adding a row; the table's
test fails until the row has every facet.

Lossless means `"12"` -> 12, `"1234.50"` -> decimal, `"true"` -> true, ISO or epoch ->
timestamp; never `"0042"` -> 42. A converter raises `TypeError` (or `ValueError`) for a value
it cannot convert so.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from crm_assets.source.schema import DECIMAL_PRECISION, DECIMAL_SCALE, Column

MAX_BIGINT = 2**63 - 1
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")  # no leading zeros, no sign on zero's behalf
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_BOOLS = {"true": True, "false": False, "True": True, "False": False}
_EPOCH_MS_ABOVE = 10**11  # epoch seconds reach 10**11 only in the year 5138
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class DataType:
    """One declarable data type. Facets left None do not apply to the type."""

    name: str  # dlt's, as the schema file declares it
    convert: Callable[[Any], Any]  # an API value to this type, losslessly (decimal: 38,9)
    arrow: pa.DataType  # the column in an arrow batch (a decimal's at the default digits)
    display: str  # for the UI; a decimal's `{precision}` and `{scale}` are filled in
    recognises: Callable[[Any], bool]  # whether `schema infer` reads a sampled value as this
    example: Any  # an API value `schema infer` reads as this type (the table's test uses it)
    exact: type | None = None  # values of this class already are this type: no conversion
    dlt_infers: type | None = None  # undeclared values of this class: dlt and arrow make this
    number_rank: int | None = None  # numbers only: a sample mixing them takes the highest


def _is_whole(value: Any) -> bool:
    """A float or a digit string that is exactly an integer (`"12"`, 12.0; not `"012"`)."""
    if type(value) is float:
        return value.is_integer()
    return type(value) is str and _INTEGER.fullmatch(value) is not None


def _bigint(value: Any) -> int:
    if type(value) is int:
        number = value
    elif _is_whole(value) or (
        type(value) is Decimal and value.is_finite() and _shape(value)[1] == 0
    ):
        number = int(value)
    else:
        raise TypeError
    if abs(number) > MAX_BIGINT:
        raise TypeError
    return number


def _double(value: Any) -> float:
    # A Decimal is a JSON number with more digits than a double keeps (http.py parses those
    # exactly); the column is declared double, so the nearest double is what was asked for.
    if type(value) is float or type(value) is int or type(value) is Decimal:
        return float(value)
    if type(value) is str and _NUMBER.fullmatch(value) and len(value.replace("-", "")) <= 16:
        return float(value)  # up to 15 significant digits survive a double exactly
    raise TypeError


def _decimal(value: Any, precision: int = DECIMAL_PRECISION, scale: int = DECIMAL_SCALE) -> Decimal:
    if type(value) is bool or not isinstance(value, int | float | str | Decimal):
        raise TypeError
    if type(value) is str and not _NUMBER.fullmatch(value):
        raise TypeError
    try:
        number = value if type(value) is Decimal else Decimal(str(value))
    except InvalidOperation:
        raise TypeError from None
    if not number.is_finite():
        raise TypeError
    # More decimals than the column keeps, or too large: the warehouse would round or overflow.
    whole, decimals = _shape(number)
    if decimals > scale or whole > precision - scale:
        raise TypeError
    return number


def _shape(number: Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it, trailing zeros not counted) of a finite
    number, exactly: Decimal arithmetic would round to its context's 28 digits."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    kept = list(digits)
    while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if not any(kept):
        return 0, 0
    return max(0, len(kept) + exponent), max(0, -exponent)


def decimal_digits(value: Any) -> tuple[int, int] | None:
    """(digits before the point, digits after it) a number needs without loss; None when it is
    no number. Lets `schema infer` widen a decimal to what it saw."""
    if type(value) is bool or not isinstance(value, int | float | str | Decimal):
        return None
    if type(value) is str and not _NUMBER.fullmatch(value):
        return None
    number = value if type(value) is Decimal else Decimal(str(value))
    return _shape(number) if number.is_finite() else None


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int or type(value) is Decimal:
        return str(value)  # a number where text is declared: its digits, exactly
    raise TypeError


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str and value in _BOOLS:
        return _BOOLS[value]
    raise TypeError


def _timestamp(value: Any) -> datetime:
    """ISO 8601 (no offset: UTC) or epoch seconds / milliseconds, as an instant in UTC."""
    if type(value) is str:
        if _INTEGER.fullmatch(value):
            return _timestamp(int(value))
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise TypeError from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if type(value) is int or type(value) is float:
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise TypeError from None
    raise TypeError


def _date(value: Any) -> date:
    if type(value) is not str:
        raise TypeError
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TypeError from None


def _json(value: Any) -> Any:
    if not isinstance(value, list | dict):
        raise TypeError
    return value


# What `schema infer` sees in a JSON value by itself: strings stay text unless ISO times.
def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bigint(value: Any) -> bool:
    return _is_int(value) and abs(value) <= MAX_BIGINT


def _is_decimal(value: Any) -> bool:
    # past 64 bits an integer is kept exactly; a Decimal has more digits than a double holds
    return isinstance(value, Decimal) or (_is_int(value) and abs(value) > MAX_BIGINT)


def _is_double(value: Any) -> bool:
    return isinstance(value, float)


def _is_json(value: Any) -> bool:
    return isinstance(value, list | dict)


def _is_timestamp(value: Any) -> bool:
    return (
        isinstance(value, str)
        and _ISO_DATETIME.match(value) is not None
        and _parses(datetime.fromisoformat, value)
    )


def _is_date(value: Any) -> bool:
    return (
        isinstance(value, str)
        and _ISO_DATE.fullmatch(value) is not None
        and _parses(date.fromisoformat, value)
    )


def _is_anything(value: Any) -> bool:
    """Text is what a value is when no other type recognises it: the last row asks this."""
    return True


def _parses(parse: Callable[[str], Any], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


# In the order `schema infer` asks: the first row that recognises a value names its type.
TYPES: dict[str, DataType] = {
    row.name: row
    for row in (
        DataType(
            name="bool",
            convert=_bool,
            arrow=pa.bool_(),
            display="bool",
            recognises=_is_bool,
            example=True,
            exact=bool,
            dlt_infers=bool,
        ),
        DataType(
            name="bigint",
            convert=_bigint,
            arrow=pa.int64(),
            display="bigint",
            recognises=_is_bigint,
            example=42,
            dlt_infers=int,
            number_rank=0,
        ),
        DataType(
            name="double",
            convert=_double,
            arrow=pa.float64(),
            display="double",
            recognises=_is_double,
            example=0.25,
            exact=float,
            dlt_infers=float,
            number_rank=1,
        ),
        DataType(
            name="decimal",
            convert=_decimal,
            arrow=pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
            display="decimal({precision},{scale})",
            recognises=_is_decimal,
            example=Decimal("4512345678901234.56"),
            number_rank=2,
        ),
        DataType(
            name="timestamp",
            convert=_timestamp,
            arrow=pa.timestamp("us", tz="UTC"),
            display="timestamp with time zone",
            recognises=_is_timestamp,
            example="2024-05-01T10:00:00+02:00",
        ),
        DataType(
            name="date",
            convert=_date,
            arrow=pa.date32(),
            display="date",
            recognises=_is_date,
            example="2024-05-01",
        ),
        DataType(
            name="json",
            convert=_json,
            arrow=pa.string(),  # JSON text, as dlt itself writes a json column to parquet
            display="json",
            recognises=_is_json,
            example=["smb", 3],
            exact=list,
        ),
        DataType(
            name="text",
            convert=_text,
            arrow=pa.string(),
            display="text",
            recognises=_is_anything,
            example="Acme",
            exact=str,
            dlt_infers=str,
        ),
    )
}


def converter(column: Column) -> Callable[[Any], Any]:
    """The lossless conversion to `column`'s declared type (a decimal's to its own digits)."""
    if column.data_type == "decimal":
        precision, scale = column.digits
        return functools.partial(_decimal, precision=precision, scale=scale)
    return TYPES[column.data_type].convert


def arrow_type(column: Column) -> pa.DataType:
    """`column`'s type in an arrow batch (a decimal's with its own digits)."""
    if column.data_type == "decimal":
        return pa.decimal128(*column.digits)
    return TYPES[column.data_type].arrow


def fits(value: Any, data_type: str | Column) -> bool:
    """Whether a non-null API value converts to `data_type` (or a column's declared type, a
    decimal's own digits included) without losing anything."""
    convert = converter(data_type) if isinstance(data_type, Column) else TYPES[data_type].convert
    try:
        convert(value)
    except (TypeError, ValueError):
        return False
    return True
