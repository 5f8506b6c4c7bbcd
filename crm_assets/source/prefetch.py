"""Fetching offset pages ahead of dlt's paginator, concurrently, so latency overlaps.

dlt's REST client pages one request after the other. The prefetcher sits in the session's
transport adapter, so it sees every page dlt receives. Once a resource's first page (offset 0)
shows `total` and the page size the server really honours, it plans the remaining offsets and
fetches up to `max_concurrent` of them at once (for the whole sync, all resources together)
through the adapter's plain transport: rate limit, connection slots and size cap apply, retries
and hooks do not. When dlt's request for a planned page reaches the adapter, it gets the answer
already fetched, and `Session.send` runs dlt's hooks and retry on it as on any other: a page that
failed ahead (a reset, a 503) counts as dlt's first attempt and is retried after dlt's backoff.
Records still reach dlt page by page, in order.

A later page of another size, not the last one, means the data or the server's cap moved: the
planned offsets would skip or repeat records, so the plan is dropped and dlt pages on one page at
a time.

Once closed (the sync is over, often failed), nothing is submitted any more: whatever still calls
in (a first page's answer planning the rest from a worker thread, a worker topping up as it
finishes, dlt's paginator not yet stopped) finds the prefetcher closed and does nothing, and
`send` sends by itself. The flag is set and read under the lock every submission holds, before
the pool is shut down, so no submission can race the shutdown and raise "cannot schedule new
futures after shutdown".
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from requests import PreparedRequest, Response

log = logging.getLogger(__name__)

# One attempt of a request, no retry, no hooks: the adapter's transport.
Fetch = Callable[..., Response]
PageKey = tuple[str, ...]
# Pages fetched ahead but not yet read, per resource, by default a multiple of the concurrency:
# enough to keep every connection busy, bounded so a slow consumer never holds a whole resource.
# A worker that would idle takes a page of another resource beyond its window, up to the sync's
# total (window x resources), so resources finishing early leave no connection unused.
_WINDOW_FACTOR = 2


def with_offset(url: str, offset: int) -> str:
    """`url` with its `offset` query parameter set to `offset`, everything else as it was."""
    parts = urlsplit(url)
    query = [
        (k, str(offset) if k == "offset" else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _page_key(url: str) -> PageKey:
    """The same page whatever the order of the query parameters."""
    parts = urlsplit(url)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    return (parts.path, *(f"{k}={v}" for k, v in query))


def _offset(url: str) -> int:
    offset = dict(parse_qsl(urlsplit(url).query)).get("offset", "0")
    return int(offset) if offset.isdigit() else 0


def _counts(response: Response) -> tuple[int, int] | None:
    """(records, total) of a good page; None for anything else, which the paginator reports."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
        received, total = len(body["data"]), body["total"]
    except (ValueError, KeyError, TypeError):
        return None
    return (received, total) if type(total) is int else None


@dataclass
class _Paging:
    """One resource (an endpoint path) being paged: its plan and the pages fetched ahead."""

    request: PreparedRequest  # the last one dlt sent (or the warm-up): planned pages copy it
    kwargs: dict[str, Any]  # ... and its transport settings (timeout, ...)
    step: int | None = None  # the page size planned with; None: one page at a time
    offsets: deque[int] = field(default_factory=deque)  # planned, not yet submitted
    pages: dict[PageKey, Future[Response]] = field(default_factory=dict)  # not yet served


class PagePrefetcher:
    """Serves planned pages from concurrent fetches; `fetch` sends everything else."""

    def __init__(
        self, fetch: Fetch, max_concurrent: int, window: int | None = None, timeout_s: float = 30.0
    ) -> None:
        self._fetch = fetch
        self.max_concurrent = max(1, max_concurrent)
        self.window = window or self.max_concurrent * _WINDOW_FACTOR
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="crm-page")
        self._lock = threading.Lock()
        self._paging: dict[str, _Paging] = {}  # path -> its paging
        self._busy = 0  # requests submitted and not yet answered
        self._closed = False  # set by `close`, under the lock: submit nothing from then on
        self.prefetched = 0  # planned pages submitted

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """One attempt of dlt's `request`: the page fetched ahead, or `request` sent now."""
        url = request.url or ""
        path, offset = urlsplit(url).path, _offset(url)
        with self._lock:
            paging = self._paging.get(path)
            if paging is None and not self._closed:
                paging = self._paging[path] = _Paging(request, kwargs)
            future = None
            if paging is not None:
                paging.request, paging.kwargs = request, kwargs
                future = paging.pages.pop(_page_key(url), None)
                if future is None and paging.offsets and paging.offsets[0] == offset:
                    paging.offsets.popleft()  # asked before it was fetched: sent below, once
        if future is not None:
            self._top_up(path)
            try:
                response = future.result()  # a failure raises here: dlt's retry takes it
            except CancelledError:  # the pool shut down under it: the sync is over
                return self._fetch(request, **kwargs)
            self._check_size(path, offset, response)
            return response
        response = self._fetch(request, **kwargs)
        if offset == 0:
            self._plan(path, response, replace=True)
        else:
            self._check_size(path, offset, response)
        return response

    def warm(self, request: PreparedRequest) -> None:
        """Fetches a resource's first page now, and plans the rest as soon as it answers.

        Called when the source is built, so paging overlaps dlt's own start-up and every
        resource is under way before dlt reaches it. If dlt's own first request differs
        (another URL), this page is simply not used. A resource already known is left alone.
        """
        url = request.url or ""
        path = urlsplit(url).path
        with self._lock:
            if self._closed or path in self._paging:
                return
            paging = self._paging[path] = _Paging(request, {"timeout": self.timeout_s})
            paging.pages[_page_key(url)] = self._submit(path, request, paging.kwargs, first=True)

    def _plan(self, path: str, first: Response, replace: bool) -> None:
        """Plans `path`'s offsets from its first page: the page size the server honoured, up to
        `total`. With `replace` (dlt sent the first page itself: a read starts), whatever an
        earlier plan fetched goes; without it (the warm-up answered), a plan made meanwhile stays.
        """
        counts = _counts(first)
        with self._lock:
            paging = self._paging.get(path)
            if self._closed or counts is None or paging is None:
                return
            if replace:
                self._drop(paging)
            elif paging.step is not None:
                return
            received, total = counts
            if 0 < received < total:
                paging.step = received
                paging.offsets.extend(range(received, total, received))
        self._top_up(path)

    def _check_size(self, path: str, offset: int, page: Response) -> None:
        """Drops the plan when a page that is not the last has another size than planned."""
        with self._lock:
            paging = self._paging.get(path)
            step = paging.step if paging is not None else None
        counts = _counts(page) if step is not None else None
        if counts is None or counts[0] == step or offset + counts[0] >= counts[1]:
            return
        with self._lock:
            if paging is not None and paging.step == step:
                self._drop(paging)
        log.warning(
            "GET %s at offset %d returned %d records, not %d; paging on one page at a time",
            path,
            offset,
            counts[0],
            step,
        )

    def _drop(self, paging: _Paging) -> None:
        """Forgets `paging`'s plan and the pages fetched for it (the caller holds the lock)."""
        paging.step = None
        paging.offsets.clear()
        for future in paging.pages.values():
            self._busy -= future.cancel()  # a cancelled request never runs
        paging.pages.clear()

    def _top_up(self, path: str) -> None:
        with self._lock:
            paging = self._paging.get(path)
            while not self._closed and paging is not None and paging.offsets:
                if len(paging.pages) >= self.window:
                    break
                self._submit_next(path, paging)
        self._keep_busy()

    def _keep_busy(self) -> None:
        """Gives a worker about to idle the next page of the resource with most pages left."""
        with self._lock:
            ahead = sum(len(paging.pages) for paging in self._paging.values())
            limit = self.window * len(self._paging)
            while not self._closed and self._busy < self.max_concurrent and ahead < limit:
                waiting = [(p, paging) for p, paging in self._paging.items() if paging.offsets]
                if not waiting:
                    return
                self._submit_next(*max(waiting, key=lambda item: len(item[1].offsets)))
                ahead += 1

    def _submit_next(self, path: str, paging: _Paging) -> None:
        """Submits `path`'s next planned offset (the caller holds the lock)."""
        request = paging.request.copy()
        request.prepare_url(with_offset(paging.request.url or "", paging.offsets.popleft()), None)
        key = _page_key(request.url or "")
        paging.pages[key] = self._submit(path, request, paging.kwargs, first=False)
        self.prefetched += 1

    def _submit(
        self, path: str, request: PreparedRequest, kwargs: dict[str, Any], first: bool
    ) -> Future[Response]:
        """Only with the lock held and the prefetcher open: `close` shuts the pool down after."""
        self._busy += 1
        return self._pool.submit(self._run, path, request, kwargs, first)

    def _run(
        self, path: str, request: PreparedRequest, kwargs: dict[str, Any], first: bool
    ) -> Response:
        try:
            response = self._fetch(request, **kwargs)
            if first:
                self._plan(path, response, replace=False)
            return response
        finally:
            with self._lock:
                self._busy -= 1
            self._keep_busy()

    def close(self) -> None:
        """Stops fetching ahead and waits for the fetches in flight; `send` sends by itself."""
        with self._lock:
            self._closed = True  # before the shutdown: no submission can come after it
            for paging in self._paging.values():
                self._drop(paging)
        self._pool.shutdown(wait=True, cancel_futures=True)
