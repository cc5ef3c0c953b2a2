"""Sessions: lists with usage, and a session's detail with its assembled messages."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from ..app import Studio
from ..errors import NotFound
from ..models import (
    INT64_MAX,
    EventFilter,
    SessionRecord,
    StoredEvent,
    UsageQuery,
    UsageTotals,
    iso_ms,
)
from ._common import clamp_limit, ok

MESSAGE_SCAN_LIMIT = 20_000
MESSAGE_TYPES = ("text_chunk", "text_chunk_start", "text_chunk_end", "done")


def session_view(
    record: SessionRecord, usage: UsageTotals | None, agent_name: str | None, connected: bool
) -> dict[str, Any]:
    totals = usage or UsageTotals()
    count = record.metadata.get("message_count")  # envelope clients report it here
    # A session not ended whose agent is gone is suspended until the agent is back: clients
    # of the original document never end their sessions, which stayed active for ever.
    status = "suspended" if record.status == "active" and not connected else record.status
    return {
        "id": record.id,
        "agent_id": record.agent_id,
        "agent_name": agent_name or record.agent_id,
        "status": status,
        "message_count": count if isinstance(count, int) else record.event_count,
        "event_count": record.event_count,
        "token_usage": totals.tokens(),
        "cost": totals.money(),
        "unpriced_tokens": totals.unpriced_tokens,
        "created_at": iso_ms(record.created_at),
        "updated_at": iso_ms(record.updated_at),
        "ended_at": iso_ms(record.ended_at),
        "metadata": record.metadata,
    }


def assemble_messages(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """Turn a session's text events into messages: one per `text_chunk` run or `text_chunk_end`."""
    messages: list[dict[str, Any]] = []
    parts: list[str] = []
    started: int | None = None

    def close(ts: int, text: str | None = None) -> None:
        nonlocal parts, started
        content = text if text is not None else "".join(parts)
        if content:
            messages.append(
                {
                    "id": f"m{len(messages) + 1}",
                    "role": "assistant",
                    "content": content,
                    "timestamp": iso_ms(started if started is not None else ts),
                }
            )
        parts, started = [], None

    for event in events:
        kind = event.event_type
        if kind not in ("text_chunk", "text_chunk_end", "text_chunk_start", "done"):
            continue
        body = orjson.loads(event.payload)
        if kind == "text_chunk":
            delta = body.get("delta")
            if isinstance(delta, str):
                started = event.ts if started is None else started
                parts.append(delta)
        elif kind == "text_chunk_end":
            text = body.get("text")
            close(event.ts, text if isinstance(text, str) and text else None)
        elif parts:  # text_chunk_start or done ends a run of chunks
            close(event.ts)
    if parts:
        close(events[-1].ts)
    return messages


def whole_messages(events: list[StoredEvent], cut: bool) -> tuple[list[StoredEvent], bool]:
    """The text events (oldest first) that make whole messages: when older ones were left out
    (`cut`), those before the first end of a message are its tail, so they go too; the ending
    itself stays when it carries the message's whole text. One run longer than the scan is
    all there is of the newest output: its tail stays."""
    if not cut:
        return events, False
    for i, event in enumerate(events):
        if event.event_type == "text_chunk_end":
            text = orjson.loads(event.payload).get("text")
            return events[i if isinstance(text, str) and text else i + 1 :], True
        if event.event_type != "text_chunk":
            return events[i:], True
    return events, True


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    store = studio.store

    def name_of(agent_id: str) -> str | None:
        agent = studio.registry.agents.get(agent_id)
        return (agent.name or agent.metadata.get("name")) if agent else None

    def connected(agent_id: str) -> bool:
        agent = studio.registry.agents.get(agent_id)
        return agent is not None and agent.connection is not None

    def view_of(record: SessionRecord, usage: UsageTotals | None) -> dict[str, Any]:
        return session_view(record, usage, name_of(record.agent_id), connected(record.agent_id))

    @api.get("/v1/dashboard/sessions", summary="Sessions, most recently active first")
    async def list_sessions(
        limit: str | None = Query(None, description="1..1000, default 50"),
        offset: int = Query(0, ge=0, le=INT64_MAX),
        status: str | None = Query(
            None, description="active, suspended (its agent gone), completed, failed, interrupted"
        ),
        agent_id: str | None = None,
    ) -> Response:
        size = clamp_limit(limit, default=50)
        online = [a.id for a in studio.registry.agents.values() if a.connection is not None]
        records, total = await studio.run_sync(
            lambda: store.list_sessions(
                status=status, agent_id=agent_id, limit=size, offset=offset, connected=online
            )
        )
        usage = await studio.run_sync(store.session_usage, [r.id for r in records])
        return ok(
            {
                "sessions": [view_of(r, usage.get(r.id)) for r in records],
                "total": total,
                "has_more": offset + len(records) < total,
            }
        )

    @api.get("/v1/dashboard/sessions/{session_id:path}", summary="A session with its messages")
    async def get_session(session_id: str) -> Response:
        record = await studio.run_sync(store.get_session, session_id)
        if record is None:
            raise NotFound("Session not found")
        # The newest text events: a long session's latest output is what is looked for.
        newest = await studio.run_sync(
            store.events_before,
            EventFilter(session_ids=(session_id,), event_types=MESSAGE_TYPES),
            None,
            MESSAGE_SCAN_LIMIT,
        )
        events, truncated = whole_messages(newest[::-1], len(newest) == MESSAGE_SCAN_LIMIT)
        by_model = await studio.run_sync(
            store.usage_rows, UsageQuery(0, INT64_MAX, session_id=session_id, group_by="model")
        )
        # One read: the session's totals are the sum of its models' rows.
        view = view_of(record, UsageTotals.of(by_model))
        view["messages"] = assemble_messages(events)
        view["messages_truncated"] = truncated
        # Each model's cost as priced when its tokens came: the console shows these, never a
        # price of its own making.
        view["cost_by_model"] = {str(r.key or "(unknown)"): r.money() for r in by_model}
        view["tokens_by_model"] = {str(r.key or "(unknown)"): r.tokens() for r in by_model}
        return ok(view)

    return api
