"""A cheap look at a CRM resource (one record, one request) to tell whether it changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from requests import RequestException, Session

from crm_assets.source.contract import API_KEY_PARAM, endpoint_path
from crm_assets.source.errors import CrmResponseError


@dataclass(frozen=True)
class Fingerprint:
    """What the probe saw: the record count and, where the API sorts, the newest `updated_at`."""

    total: int
    newest_updated_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "newest_updated_at": self.newest_updated_at}


class ProbeError(Exception):
    """A probe that failed; the message names the resource and never the key or the URL query."""


def probe(
    session: Session,
    base_url: str,
    api_key: str,
    resource: str,
    newest_first_params: Mapping[str, str],
    timeout_s: float,
) -> Fingerprint:
    """GET /v1/<resource>?offset=0&limit=1 (newest first when `newest_first_params` are given)."""
    path = endpoint_path(resource)
    params = {"offset": 0, "limit": 1, **newest_first_params, API_KEY_PARAM: api_key}
    try:
        response = session.get(base_url.rstrip("/") + path, params=params, timeout=timeout_s)
    except RequestException as error:  # its text holds the URL, key included: never use it
        raise ProbeError(
            f"probe of {resource!r} (GET {path}) failed: {type(error).__name__}"
        ) from None
    except CrmResponseError as error:  # a redirect or an oversized body; names no URL
        raise ProbeError(f"probe of {resource!r} (GET {path}): {error.problem}") from None
    if response.status_code != 200:
        raise ProbeError(
            f"probe of {resource!r} (GET {path}) answered HTTP {response.status_code}"
            f" {response.reason}"
        )
    try:
        body = response.json()
        total = body["total"]
        records = body["data"]
    except (ValueError, KeyError, TypeError):
        raise ProbeError(f"probe of {resource!r} (GET {path}): no 'data' and 'total'") from None
    if not isinstance(total, int) or isinstance(total, bool):
        raise ProbeError(f"probe of {resource!r} (GET {path}): 'total' is not a whole number")
    newest = None
    if newest_first_params and records and isinstance(records[0], dict):
        newest = records[0].get("updated_at")
    return Fingerprint(total, str(newest) if newest is not None else None)
