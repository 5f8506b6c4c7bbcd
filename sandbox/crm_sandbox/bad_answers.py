"""Answers a CRM should never give but some do: each replaces one listing page, on request.

Tests script them with `FaultPlan.serve_bad(resource, offset, kind)`; the client must fail the
sync naming the resource and offset, and load nothing. Each answer is built from the page the
sandbox would have served, so it is wrong in exactly one way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

JSON = "application/json"
OVERSIZED_BYTES = 3 * 2**20  # past a client capped at 1 or 2 MB
DEEP_LEVELS = 5_000  # past any sane nesting cap, and past orjson's 1,024


class SandboxResetError(ConnectionResetError):
    """The sandbox dropping a connection on purpose: not an error of the sandbox."""


def quiet_resets(record: logging.LogRecord) -> bool:
    """A logging filter for uvicorn: no traceback for a reset the sandbox was asked to do."""
    return not (record.exc_info and isinstance(record.exc_info[1], SandboxResetError))


def _json(body: Any, media_type: str = JSON) -> Response:
    return Response(orjson.dumps(body), media_type=media_type)


def _reset_mid_body(page: bytes) -> Response:
    """Announces the whole body, sends half, then drops the connection."""

    async def half_then_reset() -> AsyncIterator[bytes]:
        yield page[: len(page) // 2]
        raise SandboxResetError("sandbox: connection reset mid-body")

    return StreamingResponse(
        half_then_reset(), media_type=JSON, headers={"Content-Length": str(len(page))}
    )


def _deeply_nested(data: list[Any], total: int) -> Response:
    head = orjson.dumps({**(data[0] if data else {"id": 1}), "notes": None})[: -len(b"null}")]
    nested = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
    return Response(
        b'{"data": [' + head + nested + b"}], " + f'"total": {total}}}'.encode(), media_type=JSON
    )


def _with_duplicate(data: list[Any], total: int) -> Response:
    """The page's first record twice, its last left out: the same count, one id fewer."""
    return _json({"data": [data[0], *data[:-1]], "total": total})


Builder = Callable[[bytes, list[Any], int, int, bytes], Response]

# kind -> (page body, its records, total, offset, the page before it) -> the answer
BAD_ANSWERS: dict[str, Builder] = {
    "html_200": lambda page, data, total, offset, before: Response(
        b"<!doctype html><html><body><h1>Service temporarily unavailable</h1></body></html>",
        media_type="text/html",
    ),
    "truncated_json": lambda page, data, total, offset, before: Response(
        page[: len(page) // 2], media_type=JSON
    ),
    "empty_body": lambda page, data, total, offset, before: Response(b"", media_type=JSON),
    "data_object": lambda page, data, total, offset, before: _json(
        {"data": data[0] if data else {}, "total": total}
    ),
    "data_string": lambda page, data, total, offset, before: _json(
        {"data": "see attachment", "total": total}
    ),
    "total_negative": lambda page, data, total, offset, before: _json({"data": data, "total": -1}),
    "total_string": lambda page, data, total, offset, before: _json(
        {"data": data, "total": str(total)}
    ),
    # more records announced than there are: paging reaches an empty page below the total
    "total_unreachable": lambda page, data, total, offset, before: _json(
        {"data": [], "total": max(total, offset + 1)}
    ),
    "non_object_records": lambda page, data, total, offset, before: _json(
        {"data": [*data[:-1], "a string, not a record"], "total": total}
    ),
    "duplicate_ids": lambda page, data, total, offset, before: _with_duplicate(data, total),
    "repeated_page": lambda page, data, total, offset, before: Response(before, media_type=JSON),
    "oversized_body": lambda page, data, total, offset, before: _json(
        {"data": data, "total": total, "padding": "x" * OVERSIZED_BYTES}
    ),
    "deep_nesting": lambda page, data, total, offset, before: _deeply_nested(data, total),
    "wrong_content_type": lambda page, data, total, offset, before: Response(
        page, media_type="text/plain"
    ),
    "reset_mid_body": lambda page, data, total, offset, before: _reset_mid_body(page),
}


def bad_answer(kind: str, page: bytes, offset: int, before: bytes) -> Response:
    """The `kind` of bad answer in place of `page` (served at `offset`; `before` precedes it)."""
    body = orjson.loads(page)
    return BAD_ANSWERS[kind](page, body["data"], body["total"], offset, before)
