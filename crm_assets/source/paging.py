"""Offset paging that cannot skip or silently drop records."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from requests import Response

from crm_assets.source.errors import CrmResponseError


class CrmOffsetPaginator(OffsetPaginator):
    """dlt's `OffsetPaginator`, but advancing by the records received, not by the limit asked.

    A server that caps the page below our limit would otherwise make dlt skip records. Pages
    without a `data` list or a whole `total` raise `CrmResponseError` instead of loading nothing
    (dlt's default) or quoting the page (dlt's message for a missing total).
    """

    def __init__(self, limit: int, max_records: int | None = None) -> None:
        super().__init__(limit=limit, total_path="total")
        self.max_records = max_records  # a `total` beyond it is refused: paging would not end
        self._last_ids: list[Any] = []

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        offset = self.current_value
        path = urlsplit(response.url).path
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise CrmResponseError(path, offset, "response has no 'data' list")
        total = body.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise CrmResponseError(path, offset, "response has no whole, non-negative 'total'")
        if self.max_records is not None and total > self.max_records:
            raise CrmResponseError(
                path,
                offset,
                f"'total' {total:,} is more than the {self.max_records:,} records a sync reads"
                " (max_records_per_resource)",
            )
        records = body["data"]
        stray = next((n for n, r in enumerate(records) if not isinstance(r, dict)), None)
        if stray is not None:
            kind = type(records[stray]).__name__
            raise CrmResponseError(path, offset, f"record {stray + 1} is a {kind}, not an object")
        ids = [r.get("id") for r in records]
        present = [(type(i).__name__, repr(i)) for i in ids if i is not None]
        if len(set(present)) < len(present):
            repeats = len(present) - len(set(present))
            raise CrmResponseError(path, offset, f"{repeats} record(s) repeat an id of the page")
        if present and ids == self._last_ids:
            raise CrmResponseError(
                path, offset, "the page repeats the one before it (same ids): offset ignored?"
            )
        self._last_ids = ids
        received = len(records)
        if received == 0 and offset < total:
            raise CrmResponseError(
                path,
                offset,
                f"no records, though 'total' is {total:,}: more announced than paging reaches",
            )
        self.current_value = offset + received
        self._has_next_page = received > 0 and self.current_value < total
