"""Fetching offset pages ahead of dlt's paginator, concurrently, so latency overlaps.

dlt's REST client pages one request after the other. Once the first page shows `total` and the
page size the server really honours, the paginator plans the remaining offsets here; up to
`max_concurrent` of them are in flight at once (for the whole sync, all resources together), and
when the client then asks for a planned page it gets the response already fetched. Records still
reach dlt page by page, in order; every request, prefetched or not, goes through the same
retrying session and rate limit. A page that does not match the plan makes the paginator cancel
the rest and go on one page at a time.

Once closed (the sync is over, often failed), nothing is submitted any more: whatever still calls
in (a first page's answer planning the rest from a worker thread, a worker topping up as it
finishes, dlt's paginator not yet stopped) finds the prefetcher closed and does nothing, and
`send` sends by itself. The flag is set and read under the lock every submission holds, before
the pool is shut down, so no submission can race the shutdown and raise "cannot schedule new
futures after shutdown" (which concurrent.futures would log as "exception calling callback").
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from requests import PreparedRequest, Response
from requests.hooks import dispatch_hook

Send = Callable[..., Response]
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


def _page_key(url: str) -> tuple[str, ...]:
    """The same page whatever the order of the query parameters."""
    parts = urlsplit(url)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    return (parts.path, *(f"{k}={v}" for k, v in query))


class PagePrefetcher:
    """Wraps a session's `send`: serves planned pages from concurrent fetches, sends the rest."""

    def __init__(
        self, send: Send, max_concurrent: int, window: int | None = None, timeout_s: float = 30.0
    ) -> None:
        self._send = send
        self.max_concurrent = max(1, max_concurrent)
        self.window = window or self.max_concurrent * _WINDOW_FACTOR
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="crm-page")
        self._lock = threading.Lock()
        self._last: dict[str, tuple[PreparedRequest, dict[str, Any]]] = {}  # path -> request
        self._planned: dict[str, deque[int]] = {}  # path -> offsets not yet submitted
        self._fetched: dict[str, dict[tuple[str, ...], Future[Response]]] = {}  # path -> pages
        self._sent: dict[tuple[str, ...], PreparedRequest] = {}  # page -> the request sent
        self._busy = 0  # requests submitted and not yet answered
        self._closed = False  # set by `close`, under the lock: submit nothing from then on
        self.prefetched = 0

    def __deepcopy__(self, memo: dict[int, object]) -> PagePrefetcher:
        return self  # one pool per sync, however often dlt copies its config

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Installed as the session's `send`."""
        path = urlsplit(request.url or "").path
        key = _page_key(request.url or "")
        with self._lock:
            future = self._fetched.get(path, {}).pop(key, None)
            sent = self._sent.pop(key, None)
            self._last[path] = (request, kwargs)
        if future is None:
            return self._send(request, **kwargs)
        self._top_up(path)
        response = future.result()  # an error raises here, as if the request were sent now
        if sent is not None:
            # A page fetched from an earlier template (the warm first page has none of dlt's
            # hooks, nor has a plan made from it): run the hooks dlt's request carries that the
            # one sent did not, its status check among them.
            done = sent.hooks.get("response", [])
            hooks = [h for h in request.hooks.get("response", []) if h not in done]
            response = dispatch_hook("response", {"response": hooks}, response, **kwargs)
        return response  # type: ignore[no-any-return]

    def plan(self, path: str, offsets: Iterable[int]) -> None:
        """Fetch these offsets of `path` ahead, in order, like the last request sent for it.

        A path already planned (by `warm`) keeps its plan.
        """
        with self._lock:
            if self._closed or path in self._planned:
                return
            self._planned[path] = deque(offsets)
            self._fetched.setdefault(path, {})
        self._top_up(path)

    def warm(self, request: PreparedRequest) -> None:
        """Fetches a resource's first page now, and plans the rest as soon as it answers.

        Called when the source is built, so paging overlaps dlt's own start-up and every
        resource is under way before dlt reaches it. The plan follows the rule the paginator
        applies: the page size the server honoured, up to `total`. If dlt's own first request
        differs (another URL), this page is simply not used.
        """
        url = request.url or ""
        path = urlsplit(url).path
        kwargs = {"timeout": self.timeout_s}
        with self._lock:
            if self._closed or path in self._last or path in self._fetched:
                return  # closed, already warm, or dlt is already paging it
            self._last[path] = (request, kwargs)
            future = self._submit(request, kwargs)
            self._fetched.setdefault(path, {})[_page_key(url)] = future
            self._sent[_page_key(url)] = request
        future.add_done_callback(lambda done: self._plan_from_first(path, done))

    def _plan_from_first(self, path: str, done: Future[Response]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # dlt's own request gets the error, with its retries
        try:
            body = done.result().json()
            received, total = len(body["data"]), body["total"]
        except (ValueError, KeyError, TypeError):
            return  # the paginator reports what is wrong with the page
        if isinstance(total, int) and 0 < received < total:
            self.plan(path, range(received, total, received))

    def cancel(self, path: str) -> None:
        """Drop what is planned or fetched for `path`: the paginator goes on by itself."""
        with self._lock:
            self._planned.pop(path, None)
            for key, future in self._fetched.pop(path, {}).items():
                self._busy -= future.cancel()  # a cancelled request never runs
                self._sent.pop(key, None)

    def _top_up(self, path: str) -> None:
        with self._lock:
            planned, fetched = self._planned.get(path), self._fetched.get(path)
            while not self._closed and planned and fetched is not None and path in self._last:
                if len(fetched) >= self.window:
                    break
                self._submit_planned(path)
        self._keep_busy()

    def _keep_busy(self) -> None:
        """Gives a worker about to idle the next page of the resource with most pages left."""
        with self._lock:
            ahead = sum(len(pages) for pages in self._fetched.values())
            limit = self.window * len(self._fetched)
            while not self._closed and self._busy < self.max_concurrent and ahead < limit:
                waiting = [p for p, q in self._planned.items() if q and p in self._last]
                if not waiting:
                    return
                self._submit_planned(max(waiting, key=lambda p: len(self._planned[p])))
                ahead += 1

    def _submit_planned(self, path: str) -> None:
        """Submits `path`'s next planned offset (the caller holds the lock)."""
        template, kwargs = self._last[path]
        request = template.copy()
        request.prepare_url(with_offset(template.url or "", self._planned[path].popleft()), None)
        key = _page_key(request.url or "")
        self._fetched[path][key] = self._submit(request, kwargs)
        self._sent[key] = request
        self.prefetched += 1

    def _submit(self, request: PreparedRequest, kwargs: dict[str, Any]) -> Future[Response]:
        """Only with the lock held and the prefetcher open: `close` shuts the pool down after."""
        self._busy += 1
        return self._pool.submit(self._fetch, request, kwargs)

    def _fetch(self, request: PreparedRequest, kwargs: dict[str, Any]) -> Response:
        try:
            return self._send(request, **kwargs)
        finally:
            with self._lock:
                self._busy -= 1
            self._keep_busy()

    def close(self) -> None:
        with self._lock:
            self._closed = True  # before the shutdown: no submission can come after it
            self._planned.clear()
            for pages in self._fetched.values():
                for future in pages.values():
                    self._busy -= future.cancel()
            self._fetched.clear()
            self._sent.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def install(
    session: Any, max_concurrent: int, window: int | None = None, timeout_s: float = 30.0
) -> PagePrefetcher:
    """A prefetcher in front of `session.send` (which keeps its retries and rate limit)."""
    prefetcher = PagePrefetcher(session.send, max_concurrent, window, timeout_s)
    session.send = prefetcher.send
    return prefetcher
