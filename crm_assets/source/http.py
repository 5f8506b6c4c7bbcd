"""The one HTTP session every CRM call goes through: timeout and retry policy live here only."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
from dlt.sources.helpers.requests import Client
from requests import PreparedRequest, Response, Session

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


# A sensor probe retries once, briefly: the next tick is the real retry.
PROBE_RETRY_POLICY = RetryPolicy(max_retries=1, backoff_factor=0.5, max_delay_s=2.0)


def _parse_json_once(response: Response, *args: Any, **kwargs: Any) -> Response:
    """Parses a JSON body once: dlt's client and our paginator both read every page."""
    if response.ok and "json" in response.headers.get("content-type", ""):
        try:
            body = orjson.loads(response.content)  # several times faster than json
        except orjson.JSONDecodeError:
            try:  # numbers beyond 64 bits, which orjson refuses
                body = response.json()
            except ValueError:
                return response  # a broken body raises where it is read, as before
        response.json = lambda *a, **k: body  # type: ignore[method-assign]
    return response


def build_session(
    timeout_s: float,
    policy: RetryPolicy,
    rate_limiter: RateLimiter | None = None,
    max_concurrent: int | None = None,
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
    session.hooks["response"].append(_parse_json_once)
    if rate_limiter is None and max_concurrent is None:
        return session
    retrying = session.send.retry  # type: ignore[attr-defined]  # dlt's tenacity Retrying
    attempt = type(session).send.__get__(session)  # one plain attempt, no retry
    slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None

    def limited(request: PreparedRequest, **kwargs: Any) -> Response:
        if rate_limiter is not None:
            rate_limiter.acquire()
        if slots is None:
            return attempt(request, **kwargs)
        with slots:
            return attempt(request, **kwargs)

    session.send = retrying.wraps(limited)  # type: ignore[method-assign]
    return session
