"""The one HTTP session every CRM call goes through: timeout and retry policy live here only."""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
from dlt.sources.helpers.requests import Client
from requests import PreparedRequest, RequestException, Response, Session

from crm_assets.source.paging import CrmResponseError, path_and_offset
from crm_assets.source.ratelimit import RateLimiter

# The seed's retryable statuses. Anything else (400, 401, 403, 404, 501, ...) fails at once.
RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request: waits `backoff_factor * 2**(n-1)` s, or `Retry-After`, capped."""

    max_retries: int = 3
    backoff_factor: float = 2.0
    max_delay_s: float = 60.0
    statuses: tuple[int, ...] = RETRY_STATUSES

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20  # a page of 100 records is ~40 KB

# A sensor probe retries once, briefly: the next tick is the real retry.
PROBE_RETRY_POLICY = RetryPolicy(max_retries=1, backoff_factor=0.5, max_delay_s=2.0)


def _where(response: Response) -> tuple[str, int]:
    """(path, offset) of the request a response answers; never its query string."""
    url = response.request.url if response.request else response.url
    path, offset = path_and_offset(url or "")
    return path, int(offset) if offset.isdigit() else 0


def bounded_body(max_bytes: int) -> Callable[..., Response]:
    """A response hook reading the body, refusing one larger than `max_bytes`.

    Hooks run before requests reads the body, so this one reads it, in chunks, and stops at
    the cap: a server sending gigabytes costs `max_bytes` of memory, not the gigabytes.
    """

    def read_bounded(response: Response, *args: Any, **kwargs: Any) -> Response:
        if getattr(response, "_content_consumed", False):
            return response
        declared = response.headers.get("content-length", "")
        chunks, size = [], int(declared) if declared.isdigit() else 0
        if size <= max_bytes:
            size = 0
            try:
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        break
                    chunks.append(chunk)
            except RequestException as error:  # cut off mid-body: retried like a reset
                error.request = error.request or response.request  # so messages say where
                raise
        if size > max_bytes:
            response.close()
            path, offset = _where(response)
            raise CrmResponseError(path, offset, f"response body larger than {max_bytes:,} bytes")
        # what requests itself sets once it has read a body
        response._content, response._content_consumed = b"".join(chunks), True
        return response

    return read_bounded


def _no_redirect(response: Response) -> Response:
    """A redirect fails the sync, naming only the host it pointed to."""
    if not response.is_redirect:
        return response
    target = urlsplit(response.headers.get("location", "")).netloc or "a relative location"
    path, offset = _where(response)
    response.close()
    raise CrmResponseError(
        path,
        offset,
        f"answered HTTP {response.status_code}, a redirect to {target}; not followed (the API key"
        " is in the query string): point the base URL at the new location",
    )


# 16 digits in a row (a point may sit between them): a number a double may not hold exactly.
# Also matches such runs inside strings, which only costs the slower exact parse.
_LONG_NUMBER = re.compile(rb"(?:\d\.?){16}")


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


def _parse(response: Response, plain_json: Callable[..., Any]) -> Any:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and "json" not in media_type:
        path, offset = _where(response)
        raise CrmResponseError(path, offset, f"answered {media_type[:60]!r}, not JSON")
    try:
        return _exact(response.content, orjson.loads(response.content))  # orjson: fast
    except orjson.JSONDecodeError as error:
        problem = str(error)
    path, offset = _where(response)
    if "depth" in problem or "recursion" in problem:
        raise CrmResponseError(path, offset, "JSON nested deeper than 1024 levels")
    if not response.content.strip():
        raise CrmResponseError(path, offset, "answered an empty body, not JSON")
    try:
        return plain_json()  # numbers beyond 64 bits, which orjson refuses
    except ValueError:
        raise CrmResponseError(path, offset, "the body is not valid JSON (cut short?)") from None


def parse_json_once(response: Response, *args: Any, **kwargs: Any) -> Response:
    """Makes `response.json()` parse once, when first called: dlt's client and our paginator
    both read every page. Deferred, so pages fetched ahead wait as bytes, not as objects; the
    response is held weakly, so no reference cycle keeps a page alive until the next GC."""
    owner = weakref.ref(response)
    parsed: list[Any] = []

    def json_once(*a: Any, **k: Any) -> Any:
        if not parsed:
            page = owner()
            assert page is not None  # called through the response, so it is alive
            parsed.append(_parse(page, lambda: Response.json(page, *a, **k)))
        return parsed[0]

    response.json = json_once  # type: ignore[method-assign]
    return response


def build_session(
    timeout_s: float,
    policy: RetryPolicy,
    rate_limiter: RateLimiter | None = None,
    max_concurrent: int | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Session:
    """A requests session with dlt's tenacity retry wrapped around `send`.

    Connection errors and timeouts are retried too (dlt's default exception list). Status errors
    are raised by the REST client's response hook, which keeps the key out of the message.
    Under the retry, every attempt waits for the rate limit and for one of `max_concurrent`
    connection slots, so retries count against both.
    """
    client = Client(
        request_timeout=timeout_s,
        raise_for_status=False,
        status_codes=policy.statuses,
        request_max_attempts=policy.max_attempts,
        request_backoff_factor=policy.backoff_factor,
        request_max_retry_delay=policy.max_delay_s,
        respect_retry_after_header=True,
        max_connections=max(50, (max_concurrent or 0) + 4),
    )
    session = client.session
    read_bounded = bounded_body(max_response_bytes)
    retrying = session.send.retry  # type: ignore[attr-defined]  # dlt's tenacity Retrying
    attempt = type(session).send.__get__(session)  # one plain attempt, no retry
    slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None

    def limited(request: PreparedRequest, **kwargs: Any) -> Response:
        # A request's own response hooks replace the session's (dlt's client sets its status
        # check), so ours go on every request: the size cap before anything reads the body.
        hooks = request.hooks.setdefault("response", [])
        if read_bounded not in hooks:
            hooks[:0] = [read_bounded]
            hooks.append(parse_json_once)
        if rate_limiter is not None:
            rate_limiter.acquire()
        # Never follow a redirect: the key is in the query string and would go along.
        kwargs["allow_redirects"] = False
        if slots is None:
            return _no_redirect(attempt(request, **kwargs))
        with slots:
            return _no_redirect(attempt(request, **kwargs))

    session.send = retrying.wraps(limited)  # type: ignore[method-assign]
    return session
