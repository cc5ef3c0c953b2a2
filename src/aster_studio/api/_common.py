"""What every REST route shares: the `{success, data}` envelope, errors, and query parsing."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..control.service import Conflict, Expired
from ..errors import BadRequest, NotFound, StoreError
from ..models import EventFilter, parse_time_ms

PERIODS_MS = {
    "1h": 3_600_000,
    "hour": 3_600_000,
    "24h": 86_400_000,
    "day": 86_400_000,
    "7d": 7 * 86_400_000,
    "week": 7 * 86_400_000,
    "30d": 30 * 86_400_000,
    "month": 30 * 86_400_000,
}
BUCKETS_MS = {
    3_600_000: 300_000,
    86_400_000: 3_600_000,
    7 * 86_400_000: 6 * 3_600_000,
    30 * 86_400_000: 86_400_000,
}


class JSONBody(Response):
    media_type = "application/json"


def ok(data: Any, status: int = 200) -> Response:
    """Wrap `data` in the success envelope."""
    return JSONBody(orjson.dumps({"success": True, "data": data}), status_code=status)


def ok_raw(data_json: bytes) -> Response:
    """Wrap already-serialized JSON in the success envelope without parsing it."""
    return JSONBody(b'{"success":true,"data":' + data_json + b"}")


def fail(status: int, code: str, message: str, **extra: Any) -> Response:
    """Return the error envelope every REST error shares."""
    return JSONBody(
        orjson.dumps({"success": False, "error": {"code": code, "message": message, **extra}}),
        status_code=status,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map our exceptions and the framework's to the one REST error shape."""

    async def not_found(_: Request, exc: Exception) -> Response:
        return fail(404, "not_found", str(exc))

    async def bad_request(_: Request, exc: Exception) -> Response:
        return fail(400, "bad_request", str(exc))

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('query', 'body', 'path'))}: "
            f"{e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return fail(400, "bad_request", "; ".join(problems) or "invalid request")

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return fail(exc.status_code, code, str(exc.detail))

    async def store_error(_: Request, exc: Exception) -> Response:
        return fail(503, "store_unavailable", str(exc))

    async def conflict(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Conflict)
        return fail(409, "conflict", str(exc), **exc.detail)

    async def expired(_: Request, exc: Exception) -> Response:
        return fail(410, "expired", str(exc))

    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(Expired, expired)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(StoreError, store_error)


def period_ms(period: str | None) -> int:
    """Return the window of `period`; like the original, an unknown value means 24 h."""
    return PERIODS_MS.get((period or "24h").lower(), 86_400_000)


def clamp_limit(limit: int | str | None, default: int = 100, maximum: int = 1000) -> int:
    """A page size. As in the original (DASHBOARD-API.md), one that is not a positive number,
    `abc` included, is the default; past `maximum` it is `maximum`."""
    if isinstance(limit, str):
        text = limit.strip()
        number = text.removeprefix("-")
        limit = int(text) if number.isascii() and number.isdigit() and len(number) < 19 else None
    if limit is None or limit <= 0:
        return default
    return min(limit, maximum)


def _csv(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def _ids(value: str | None) -> tuple[str, ...] | None:
    """The ids a filter names: each comma-separated one, and the whole value as it came, so
    that an agent or session whose id holds a comma can be filtered on too."""
    parts = _csv(value)
    if parts is None or value is None or (len(parts) == 1 and parts[0] == value):
        return parts
    return (value, *parts)


def event_filter(
    *,
    agent_id: str | None,
    session_id: str | None,
    channel: str | None,
    event_type: str | None,
    severity: str | None,
    start: str | None,
    end: str | None,
    q: str | None,
) -> EventFilter:
    """Build an event filter from query parameters (lists are comma-separated)."""
    start_ms = parse_time_ms(start, "start") if start else None
    end_ms = parse_time_ms(end, "end") if end else None
    channels = _csv(channel)
    return EventFilter(
        agent_ids=_ids(agent_id),
        session_ids=_ids(session_id),
        channels=tuple(c.lower() for c in channels) if channels else None,
        event_types=_csv(event_type),
        severities=_csv(severity),
        start_ms=start_ms,
        end_ms=end_ms,
        text=q or None,
    )
