"""The response every CRM call gets: its body read under a size cap, its JSON parsed once."""

from __future__ import annotations

import functools
import io
import json
import re
from decimal import Decimal
from typing import Any

import orjson
import requests
import urllib3
from requests import PreparedRequest, RequestException, Response
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from crm_assets.source.errors import CrmResponseError, where

DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20  # a page of 100 records is ~40 KB
_CHUNK_BYTES = 1 << 16
# urllib3's errors while reading a body, as requests' `Response.content` names them.
_BODY_ERRORS: tuple[tuple[type[Exception], type[RequestException]], ...] = (
    (urllib3.exceptions.ProtocolError, ChunkedEncodingError),
    (urllib3.exceptions.DecodeError, ContentDecodingError),
    (urllib3.exceptions.ReadTimeoutError, requests.ConnectionError),
    (urllib3.exceptions.SSLError, requests.exceptions.SSLError),
)

# 16 digits in a row (a point may sit between them): a number a double may not hold exactly.
# Also matches such runs inside strings, which only costs the slower exact parse.
_LONG_NUMBER = re.compile(rb"(?:\d\.?){16}")


def read_capped(streamed: Response, max_bytes: int) -> bytes:
    """The body of `streamed` (its `raw` urllib3 response, not yet read), refused past `max_bytes`.

    Read in chunks, decompressed, and stopped at the cap: a server sending gigabytes costs
    `max_bytes` of memory, not the gigabytes.
    """
    declared = streamed.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        _refuse(streamed, max_bytes)
    chunks, size = [], 0
    try:
        for chunk in streamed.raw.stream(_CHUNK_BYTES, True):  # True: decompressed
            size += len(chunk)
            if size > max_bytes:
                _refuse(streamed, max_bytes)
            chunks.append(chunk)
    except urllib3.exceptions.HTTPError as error:
        raise _as_requests_error(error, streamed.request) from error
    return b"".join(chunks)


def _as_requests_error(
    error: urllib3.exceptions.HTTPError, request: PreparedRequest | None
) -> RequestException:
    """What requests raises for `error` while reading a body: a body cut off midway is a
    `ChunkedEncodingError`, which dlt's retry treats like a connection reset. It names the
    request, so a message can say where."""
    for theirs, ours in _BODY_ERRORS:
        if isinstance(error, theirs):
            return ours(error, request=request)
    return requests.ConnectionError(error, request=request)


def _refuse(streamed: Response, max_bytes: int) -> None:
    streamed.close()  # the connection, half read, is not reused
    path, offset = where(streamed.request.url if streamed.request else streamed.url)
    raise CrmResponseError(path, offset, f"response body larger than {max_bytes:,} bytes")


# What `HTTPAdapter.build_response` sets on a response besides its body (`raw`).
_HEAD = ("status_code", "headers", "encoding", "reason", "url", "cookies", "request", "connection")


class CrmResponse(Response):
    """A response whose body is already read (under the cap) and whose `json()` parses it once.

    dlt's client, the paginator and the prefetcher all read a page's JSON; parsing is deferred
    to the first of them, so pages fetched ahead wait as bytes, not as objects.
    """

    @classmethod
    def holding(cls, head: Response, body: bytes) -> CrmResponse:
        """`head`'s status, headers and request, with `body` (read from `head`) as its body."""
        response = cls()
        for name in _HEAD:
            setattr(response, name, getattr(head, name))
        response.raw = io.BytesIO(body)  # requests reads any file-like `raw`
        return response

    def json(self, **kwargs: Any) -> Any:
        """The body as JSON, exactly (see `_parse_exact`); parsed on the first call only."""
        return self._document

    @functools.cached_property
    def _document(self) -> Any:
        return _parse_exact(self)


def _exact_float(text: str) -> float | Decimal:
    """A JSON fraction as a float when the float says the same number, else as a Decimal: a
    16-digit amount with cents or an over-precise rate must not lose digits on the way in."""
    number = float(text)
    return number if Decimal(repr(number)) == Decimal(text) else Decimal(text)


def _exact(content: bytes, fast: Any) -> Any:
    """`fast` (orjson's parse), or the body parsed again exactly when it holds a long number:
    orjson turns integers past 64 bits and long fractions into floats, losing digits."""
    if not _LONG_NUMBER.search(content):
        return fast
    return json.loads(content, parse_float=_exact_float)


def _parse_exact(response: Response) -> Any:
    """The body as JSON, numbers exact; anything but a JSON body raises `CrmResponseError`."""
    path, offset = where(response.request.url if response.request else response.url)
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and "json" not in media_type:
        raise CrmResponseError(path, offset, f"answered {media_type[:60]!r}, not JSON")
    content = response.content
    try:
        return _exact(content, orjson.loads(content))  # orjson: fast
    except orjson.JSONDecodeError as error:
        problem = str(error)
    if "depth" in problem or "recursion" in problem:
        raise CrmResponseError(path, offset, "JSON nested deeper than 1024 levels")
    if not content.strip():
        raise CrmResponseError(path, offset, "answered an empty body, not JSON")
    try:  # what orjson refuses and Python's parser takes (lone surrogates, NaN)
        return Response.json(response, parse_float=_exact_float)
    except ValueError:
        raise CrmResponseError(path, offset, "the body is not valid JSON (cut short?)") from None
