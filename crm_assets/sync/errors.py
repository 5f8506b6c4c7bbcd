"""Turns a failed dlt run into one message that says what failed and where, without secrets."""

from __future__ import annotations

from collections.abc import Iterator

from dlt.common.schema.exceptions import DataValidationError
from dlt.extract.exceptions import ResourceExtractionError
from requests import HTTPError, RequestException

from crm_assets.source.errors import CrmResponseError, where
from crm_assets.source.http import RetryPolicy
from crm_assets.source.schema import schema_path
from crm_assets.sync.redaction import redact, variants


class CrmSyncError(Exception):
    """A CRM sync that failed; the warehouse keeps what the last good sync left."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the step exception dlt wraps."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "exception", None), current.__cause__, current.__context__]


def describe_sync_failure(exc: BaseException, policy: RetryPolicy, secrets: list[str]) -> str:
    """What failed, for which resource, at which offset, and what to do; never record contents."""
    chain = list(_chain(exc))
    resource = next(
        (e.pipe_name for e in chain if isinstance(e, ResourceExtractionError)), "(unknown)"
    )
    step = getattr(exc, "step", None)
    cause = getattr(exc, "exception", exc)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()] or [""]
    summary = lines[0][:300] + (f" ... {lines[-1][:300]}" if len(lines) > 1 else "")
    message = f"CRM sync failed in dlt step {step!r}: {type(cause).__name__}: {summary}"
    for error in chain:
        if isinstance(error, HTTPError) and error.response is not None:
            status = error.response.status_code
            path, offset = where(error.response.url)
            retried = (
                f"gave up after {policy.max_attempts} attempts"
                if status in policy.statuses
                else f"not retried (only {', '.join(map(str, policy.statuses))} are)"
            )
            hint = " Check the API key (CRM_API_KEY)." if status in (401, 403) else ""
            message = (
                f"CRM resource {resource!r}: GET {path} at offset {offset} answered HTTP {status}"
                f" {error.response.reason}; {retried}.{hint}"
            )
            break
        if isinstance(error, CrmResponseError):
            message = f"CRM resource {resource!r}: {error}."
            break
        if isinstance(error, RequestException):
            path, offset = where(error.request.url if error.request is not None else None)
            message = (
                f"CRM resource {resource!r}: GET {path} at offset {offset} failed with"
                f" {type(error).__name__} after {policy.max_attempts} attempts."
            )
            break
    frozen = next(
        (e for e in chain if isinstance(e, DataValidationError) and e.schema_entity == "data_type"),
        None,
    )
    if frozen is not None:
        field = frozen.column_name.split("__v_")[0]
        message = (
            f"CRM resource {frozen.table_name!r}: undeclared field {field!r} changed type, and the"
            " schema contract freezes the types of loaded columns (dlt would add"
            f" {frozen.column_name!r}). Declare it under {frozen.table_name!r} in the schema file"
            f" {schema_path()} (crm-assets schema infer adds it from the API's records), or fix"
            " it at the source."
        )
    if step in ("extract", "normalize"):
        message += " Nothing was loaded: the warehouse is as the last good sync left it."
    return redact(message, {v for secret in secrets for v in variants(secret)})
