"""Fetching offset pages ahead of dlt's paginator, concurrently, so latency overlaps.

dlt's REST client pages one request after the other. Once the first page shows `total` and the
page size the server really honours, the paginator plans the remaining offsets here; up to
`max_concurrent` of them are in flight at once (for the whole sync, all resources together), and
when the client then asks for a planned page it gets the response already fetched. Records still
reach dlt page by page, in order; every request, prefetched or not, goes through the same
retrying session and rate limit. A page that does not match the plan makes the paginator cancel
the rest and go on one page at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from requests import PreparedRequest, Response

Send = Callable[..., Response]
# Pages fetched ahead but not yet read, per resource, as a multiple of the concurrency: enough
# to keep every connection busy, bounded so a slow consumer never holds a whole resource.
_WINDOW_FACTOR = 2


def with_offset(url: str, offset: int) -> str:
    """`url` with its `offset` query parameter set to `offset`, everything else as it was."""
    parts = urlsplit(url)
    query = [
        (k, str(offset) if k == "offset" else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _page_key(url: str) -> tuple[str, ...]:
    """The same page whatever the order of the query parameters."""
    parts = urlsplit(url)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    return (parts.path, *(f"{k}={v}" for k, v in query))


class PagePrefetcher:
    """Wraps a session's `send`: serves planned pages from concurrent fetches, sends the rest."""

    def __init__(self, send: Send, max_concurrent: int) -> None:
        self._send = send
        self.max_concurrent = max(1, max_concurrent)
        self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="crm-page")
        self._lock = threading.Lock()
        self._last: dict[str, tuple[PreparedRequest, dict[str, Any]]] = {}  # path -> request
        self._planned: dict[str, deque[int]] = {}  # path -> offsets not yet submitted
        self._fetched: dict[str, dict[tuple[str, ...], Future[Response]]] = {}  # path -> pages
        self.prefetched = 0

    def __deepcopy__(self, memo: dict[int, object]) -> PagePrefetcher:
        return self  # one pool per sync, however often dlt copies its config

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Installed as the session's `send`."""
        path = urlsplit(request.url or "").path
        with self._lock:
            future = self._fetched.get(path, {}).pop(_page_key(request.url or ""), None)
            self._last[path] = (request, kwargs)
        if future is None:
            return self._send(request, **kwargs)
        self._top_up(path)
        return future.result()  # an error raises here, as if the request were sent now

    def plan(self, path: str, offsets: Iterable[int]) -> None:
        """Fetch these offsets of `path` ahead, in order, like the last request sent for it."""
        with self._lock:
            self._planned[path] = deque(offsets)
            self._fetched.setdefault(path, {})
        self._top_up(path)

    def cancel(self, path: str) -> None:
        """Drop what is planned or fetched for `path`: the paginator goes on by itself."""
        with self._lock:
            self._planned.pop(path, None)
            for future in self._fetched.pop(path, {}).values():
                future.cancel()

    def _top_up(self, path: str) -> None:
        with self._lock:
            planned, fetched = self._planned.get(path), self._fetched.get(path)
            if not planned or fetched is None or path not in self._last:
                return
            template, kwargs = self._last[path]
            while planned and len(fetched) < self.max_concurrent * _WINDOW_FACTOR:
                request = template.copy()
                request.prepare_url(with_offset(template.url or "", planned.popleft()), None)
                key = _page_key(request.url or "")
                fetched[key] = self._pool.submit(self._send, request, **kwargs)
                self.prefetched += 1

    def close(self) -> None:
        with self._lock:
            self._planned.clear()
            for pages in self._fetched.values():
                for future in pages.values():
                    future.cancel()
            self._fetched.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def install(session: Any, max_concurrent: int) -> PagePrefetcher:
    """A prefetcher in front of `session.send` (which keeps its retries and rate limit)."""
    prefetcher = PagePrefetcher(session.send, max_concurrent)
    session.send = prefetcher.send
    return prefetcher
