"""The one HTTP session every CRM call goes through: timeout and retry policy live here only.

dlt's `Client` builds the session and wraps its `send` in dlt's tenacity retry. Each attempt
reaches the transport adapter mounted here (requests' documented extension point), which waits
for the rate limit and a connection slot, reads the body under the size cap, refuses redirects,
and, with a prefetcher installed, answers pages fetched ahead.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.requests import Client
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter

from crm_assets.source.errors import CrmResponseError, where
from crm_assets.source.prefetch import PagePrefetcher
from crm_assets.source.ratelimit import RateLimiter
from crm_assets.source.response import DEFAULT_MAX_RESPONSE_BYTES, CrmResponse, read_capped

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


class CrmAdapter(HTTPAdapter):
    """requests' HTTP adapter, sending one attempt of a CRM request the way every attempt goes.

    dlt's retry sits above it, in `Session.send`, so retries count against the rate limit and
    the connection slots too. Only the HTTPAdapter's own state survives a deep copy (dlt copies
    its config, session included, to validate it); the copy is never used to send.
    """

    def __init__(
        self,
        rate_limiter: RateLimiter | None = None,
        max_concurrent: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        pool_maxsize: int = 50,
    ) -> None:
        super().__init__(pool_maxsize=pool_maxsize)
        self.rate_limiter = rate_limiter
        self.max_response_bytes = max_response_bytes
        self.slots: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if max_concurrent:
            self.slots = threading.BoundedSemaphore(max_concurrent)
        self.prefetcher: PagePrefetcher | None = None

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        """One attempt: a page the prefetcher fetched ahead, or the request sent now."""
        if self.prefetcher is not None:
            return self.prefetcher.send(request, **kwargs)
        return self.transport(request, **kwargs)

    def transport(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Sends `request` once, under the rate limit and a connection slot; no hooks, no retry.

        A redirect fails here, naming only the host it points to: `Session.send` follows one
        after the adapter returns, and the key, in the query string, would go along.
        """
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        with self.slots:  # the body is read inside: the connection is busy until then
            response = super().send(request, **kwargs)
        if response.is_redirect:
            target = urlsplit(response.headers["location"]).netloc or "a relative location"
            path, offset = where(request.url)
            raise CrmResponseError(
                path,
                offset,
                f"answered HTTP {response.status_code}, a redirect to {target}; not followed (the"
                " API key is in the query string): point the base URL at the new location",
            )
        return response

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        """requests' response, its body read here under the cap, as a `CrmResponse`."""
        streamed = super().build_response(req, resp)
        return CrmResponse.holding(streamed, read_capped(streamed, self.max_response_bytes))


def build_session(
    timeout_s: float,
    policy: RetryPolicy,
    rate_limiter: RateLimiter | None = None,
    max_concurrent: int | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Session:
    """A requests session with dlt's tenacity retry around `send` and a `CrmAdapter` under it.

    Connection errors and timeouts are retried too (dlt's default exception list). Status errors
    are raised by the REST client's response hook, which keeps the key out of the message.
    Every attempt waits for the rate limit and for one of `max_concurrent` connection slots.
    """
    session = Client(
        request_timeout=timeout_s,
        raise_for_status=False,
        status_codes=policy.statuses,
        request_max_attempts=policy.max_attempts,
        request_backoff_factor=policy.backoff_factor,
        request_max_retry_delay=policy.max_delay_s,
        respect_retry_after_header=True,
    ).session
    adapter = CrmAdapter(
        rate_limiter, max_concurrent, max_response_bytes, max(50, (max_concurrent or 0) + 4)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def install_prefetcher(session: Session, max_concurrent: int, timeout_s: float) -> PagePrefetcher:
    """Pages of `session` (from `build_session`) fetched ahead, `max_concurrent` at once, through
    its adapter's transport. Close the prefetcher when the sync ends."""
    adapter = session.get_adapter("https://")
    if not isinstance(adapter, CrmAdapter):
        raise TypeError("install_prefetcher needs a session from build_session")
    adapter.prefetcher = PagePrefetcher(adapter.transport, max_concurrent, timeout_s=timeout_s)
    return adapter.prefetcher
