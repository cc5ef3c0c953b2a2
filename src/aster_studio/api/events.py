"""Stored events: newest-first pages, cursor reads, and JSONL/CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response, StreamingResponse

from ..app import Studio
from ..errors import BadRequest
from ..live.bus import event_items
from ..models import INT64_MAX, EventFilter, StoredEvent, iso_ms
from ._common import clamp_limit, event_filter, fail, ok, ok_raw

EXPORT_PAGE = 2_000
EXPORT_MAX = 1_000_000


def filters(
    agent_id: Annotated[str | None, Query(description="agent id(s), comma-separated")] = None,
    session_id: Annotated[str | None, Query(description="session id(s), comma-separated")] = None,
    channel: Annotated[str | None, Query(description="progress, control, monitor")] = None,
    event_type: Annotated[str | None, Query(description="event type(s), comma-separated")] = None,
    severity: Annotated[str | None, Query(description="info, warn, error, fatal")] = None,
    start: Annotated[str | None, Query(description="from this time (ISO 8601 or ms)")] = None,
    end: Annotated[str | None, Query(description="before this time (ISO 8601 or ms)")] = None,
    q: Annotated[str | None, Query(description="text the raw event contains")] = None,
) -> EventFilter:
    return event_filter(
        agent_id=agent_id,
        session_id=session_id,
        channel=channel,
        event_type=event_type,
        severity=severity,
        start=start,
        end=end,
        q=q,
    )


def _lacks(payload: bytes, key: str) -> bool:
    """Whether the stored event object has no member `key` at its top level."""
    if b'"%b"' % key.encode() not in payload:  # as orjson writes a key: certainly absent
        return True
    body = orjson.loads(payload)  # a nested member, or a value holding the name
    return not isinstance(body, dict) or key not in body


def with_type_inside(events: list[StoredEvent]) -> list[StoredEvent]:
    """The events with `channel` and `event_type` inside each raw event object, where the
    sender left them out (an inferred channel, a `type` for `event_type`, none at all).

    The original console reads them there (DASHBOARD-API.md 4.7); members the sender did send
    are kept as sent, and the stored event is not changed.
    """
    typed: list[StoredEvent] = []
    for event in events:
        payload = event.payload
        added = b""
        if _lacks(payload, "channel"):
            added += b'"channel":' + orjson.dumps(event.channel) + b","
        if _lacks(payload, "event_type"):
            added += b'"event_type":' + orjson.dumps(event.event_type) + b","
        if added and payload[:1] == b"{":
            rest = payload[1:]
            if rest.lstrip()[:1] == b"}":  # an empty object: no comma after the last added
                added = added[:-1]
            event = event._replace(payload=b"{" + added + rest)
        typed.append(event)
    return typed


def items_json(events: list[StoredEvent], data_key: str = "event") -> bytes:
    """Serialize events as a JSON array of API items.

    REST items (`event`) carry `channel` and `event_type` inside the raw event too; the live
    stream's `data` stays the event as the agent sent it.
    """
    if data_key == "event":
        events = with_type_inside(events)
    return b"[" + b",".join(event_items(events, data_key=data_key)) + b"]"


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    store = studio.store

    @api.get("/v1/dashboard/events", summary="Stored events, newest first")
    async def list_events(
        flt: Annotated[EventFilter, Depends(filters)],
        limit: str | None = Query(None, description="1..1000, default 100"),
        before: int | None = Query(
            None, ge=0, le=INT64_MAX, description="only events with a smaller cursor"
        ),
    ) -> Response:
        size = clamp_limit(limit)
        # One more than the page: whether anything is left, without a request for nothing.
        events = await studio.run_sync(store.events_before, flt, before, size + 1)
        more = len(events) > size
        if more:
            del events[size:]
        newest = events[0].id if events else 0
        older = events[-1].id if more else None
        tail = orjson.dumps({"cursor": newest, "next_before": older, "has_more": older is not None})
        return ok_raw(b'{"events":' + items_json(events) + b"," + tail[1:])

    @api.get("/v1/dashboard/events/since/{cursor}", summary="Events after a cursor, oldest first")
    async def events_since(
        cursor: str,
        flt: Annotated[EventFilter, Depends(filters)],
        limit: str | None = Query(None, description="1..1000, default 100"),
    ) -> Response:
        try:
            after = int(cursor)
        except ValueError:
            return fail(400, "bad_request", "Invalid cursor")
        if not -INT64_MAX <= after <= INT64_MAX:
            return fail(400, "bad_request", "Invalid cursor: out of range")
        size = clamp_limit(limit)
        events = await studio.run_sync(store.events_after, flt, after, size + 1)
        more = len(events) > size
        if more:
            del events[size:]
        last = events[-1].id if events else after
        tail = orjson.dumps({"cursor": last, "next_cursor": max(last, after), "has_more": more})
        return ok_raw(b'{"events":' + items_json(events) + b"," + tail[1:])

    @api.get("/v1/dashboard/events/count", summary="How many stored events match the filters")
    async def count_events(flt: Annotated[EventFilter, Depends(filters)]) -> Response:
        return ok({"count": await studio.run_sync(store.count_events, flt)})

    @api.get("/v1/dashboard/events/export", summary="Download matching events as JSONL or CSV")
    async def export(
        flt: Annotated[EventFilter, Depends(filters)],
        format: str = Query("jsonl", pattern="^(jsonl|csv)$"),
        limit: str | None = Query(None, description=f"1..{EXPORT_MAX}, default {EXPORT_MAX}"),
    ) -> Response:
        most = clamp_limit(limit, default=EXPORT_MAX, maximum=EXPORT_MAX)
        if format not in ("jsonl", "csv"):
            raise BadRequest("format must be jsonl or csv")

        async def rows() -> AsyncIterator[bytes]:
            after, sent = 0, 0
            if format == "csv":
                yield _csv_line(
                    [
                        "cursor",
                        "timestamp",
                        "agent_id",
                        "session_id",
                        "channel",
                        "event_type",
                        "severity",
                        "event",
                    ]
                )
            while sent < most:
                page = await studio.run_sync(
                    store.events_after, flt, after, min(EXPORT_PAGE, most - sent)
                )
                if not page:
                    return
                if format == "jsonl":
                    yield b"\n".join(event_items(with_type_inside(page))) + b"\n"
                else:
                    yield b"".join(
                        _csv_line(
                            [
                                str(e.id),
                                iso_ms(e.ts) or "",
                                e.agent_id,
                                e.session_id or "",
                                e.channel,
                                e.event_type,
                                e.severity or "",
                                e.payload.decode(),
                            ]
                        )
                        for e in page
                    )
                sent += len(page)
                after = page[-1].id

        media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
        return StreamingResponse(
            rows(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="events.{format}"'},
        )

    @api.get("/v1/dashboard/events/stats", summary="Open live-stream connections")
    async def stream_stats() -> Response:
        return ok({"active_connections": studio.dashboard_connections})

    return api


def _cell(text: str) -> str:
    """A cell a spreadsheet shows as text: agent-supplied text starting `=`, `+`, `-`, `@`
    (or a tab or return) would be run as a formula (`=HYPERLINK(...)`), so it gets a `'`."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(fields: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_cell(f) for f in fields])
    return buffer.getvalue().encode()
