"""The sandbox CRM REST API as a Starlette app: the same contract a real CRM offers us."""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_sandbox.bad_answers import bad_answer
from crm_sandbox.data import CrmStore, UnknownRecordError, dumps
from crm_sandbox.faults import FaultPlan

_REDIRECTS = (301, 302, 307, 308)
_REASONS = {429: "rate limited", 500: "internal error", 502: "bad gateway", 503: "unavailable"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


def _timestamp_param(request: Request, name: str) -> datetime | None:
    """An ISO 8601 query parameter (no offset: UTC), or None when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_app(store: CrmStore, faults: FaultPlan, api_key: str) -> Starlette:
    """Routes: `GET /v1/<resource>` for syncs and probes; `/admin/<resource>[/<id>]` for changes."""

    def authorized(request: Request) -> bool:
        given = request.query_params.get("api_key", "")
        return hmac.compare_digest(given.encode(), api_key.encode())

    async def list_records(request: Request) -> Response:
        resource = request.path_params["resource"]
        if not authorized(request):
            faults.record(resource, None, None, 401)
            return _error(401, "invalid or missing api_key")
        if resource not in store.resources:
            faults.record(resource, None, None, 404)
            return _error(404, f"unknown resource {resource!r}")
        try:
            offset = _int_param(request, "offset", 0, minimum=0)
            limit = _int_param(request, "limit", 100, minimum=1)
            sort = request.query_params.get("sort")
            if sort not in (None, "id", "-updated_at"):
                raise ValueError("sort must be 'id' or '-updated_at'")
            since = _timestamp_param(request, "updated_since")
        except ValueError as problem:
            faults.record(resource, None, None, 400)
            return _error(400, str(problem))
        if faults.on_request is not None:
            faults.on_request(resource, offset)
        fault = faults.decide(resource, offset)
        status = fault.status if fault else 200
        faults.record(resource, offset, limit, status, request.query_params.get("updated_since"))
        with faults.serving():
            if faults.settings.latency_ms:
                await asyncio.sleep(faults.settings.latency_ms / 1000)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else None
            if fault.status in _REDIRECTS:  # elsewhere, query (and key) along: the risky kind
                headers = {
                    "Location": f"http://elsewhere.invalid{request.url.path}?{request.url.query}"
                }
            return _error(fault.status, _REASONS.get(fault.status, "injected fault"), headers)
        size = min(limit, faults.settings.max_page_size, faults.take_short(resource, offset))
        if faults.take_skip(resource, offset):
            offset += size
        newest_first = sort == "-updated_at"
        body = store.page_body(resource, offset, size, newest_first, since)
        if kind := faults.take_bad(resource, offset):
            before = store.page_body(resource, max(0, offset - size), size, newest_first, since)
            return bad_answer(kind, body, offset, before)
        return Response(body, media_type="application/json")

    async def admin(request: Request) -> Response:
        """Insert (POST), update (PATCH) or delete (DELETE) records between syncs."""
        if not authorized(request):
            return _error(401, "invalid or missing api_key")
        resource = request.path_params["resource"]
        if resource not in store.resources:
            return _error(404, f"unknown resource {resource!r}")
        record_id = request.path_params.get("record_id")
        body: dict[str, Any] = await request.json() if request.method != "DELETE" else {}
        try:
            # dumps: money past a double's digits (the edge dialect) as exact JSON numbers
            if request.method == "POST" and record_id is None:
                record = store.insert(resource, body)
                return Response(dumps(record), status_code=201, media_type="application/json")
            if request.method == "PATCH" and record_id is not None:
                record = store.update(resource, record_id, body)
                return Response(dumps(record), media_type="application/json")
            if request.method == "DELETE" and record_id is not None:
                store.delete(resource, record_id)
                return Response(status_code=204)
        except UnknownRecordError:
            return _error(404, f"no {resource} with id {record_id}")
        return _error(405, "use POST /admin/<resource>, PATCH or DELETE /admin/<resource>/<id>")

    async def stats(request: Request) -> Response:
        """Requests answered so far, by status (for benchmarks run against a separate process)."""
        if not authorized(request):
            return _error(401, "invalid or missing api_key")
        return JSONResponse(faults.status_counts())

    return Starlette(
        routes=[
            Route("/admin/stats", stats, methods=["GET"]),
            Route("/v1/{resource}", list_records, methods=["GET"]),
            Route("/admin/{resource}", admin, methods=["POST"]),
            Route("/admin/{resource}/{record_id:int}", admin, methods=["PATCH", "DELETE"]),
        ]
    )
