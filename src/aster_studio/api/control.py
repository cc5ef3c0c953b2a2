"""Requests, decisions, answers, tool control and the audit log (docs/control.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from ..app import Studio
from ..control.service import MAX_ACTOR, MAX_NOTE, view
from ..errors import BadRequest, NotFound
from ..models import RequestRecord, iso_ms
from ._common import clamp_limit, ok


def _actor(body: dict[str, Any]) -> str:
    actor = body.get("decided_by", "console")
    if not isinstance(actor, str) or not 0 < len(actor) <= MAX_ACTOR:
        raise BadRequest(f"'decided_by' must be a name of 1..{MAX_ACTOR} characters")
    return actor


def _note(body: dict[str, Any]) -> str | None:
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise BadRequest(f"'note' must be text of at most {MAX_NOTE} characters")
    return note or None


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    control = studio.control

    @api.get("/v1/dashboard/requests", summary="Requests agents made of people, newest first")
    async def list_requests(
        status: str = Query("pending", pattern="^(pending|decided|expired|all)$"),
        agent_id: str | None = None,
        kind: str | None = Query(None, pattern="^(permission|question|tool_control)$"),
        limit: str | None = Query(None, description="1..1000, default 100"),
    ) -> Response:
        records = await studio.run_sync(
            lambda: studio.store.list_requests(
                status=None if status == "all" else status,
                agent_id=agent_id,
                kind=kind,
                limit=clamp_limit(limit),
            )
        )

        # The store may lag the live state by the writes still queued (a request superseded
        # or closed a moment ago is pending there): the service's copy of a request wins, and
        # the filters apply to what it says.
        def wanted(record: RequestRecord) -> bool:
            return (
                status in ("all", record.status)
                and agent_id in (None, record.agent_id)
                and kind in (None, record.kind)
            )

        latest = {r.id: control.current(r) for r in records}
        for record in control.unstored():
            latest[record.id] = record
        merged = sorted(
            (r for r in latest.values() if wanted(r)),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )[: clamp_limit(limit)]
        return ok({"requests": [view(r) for r in merged], "pending": control.pending_count})

    @api.get("/v1/dashboard/requests/{request_id}", summary="One request")
    async def get_request(request_id: str) -> Response:
        record = control.latest(request_id) or await studio.run_sync(
            studio.store.get_request, request_id
        )
        if record is None:
            raise NotFound(f"no request {request_id!r}")
        return ok(view(record))

    @api.post("/v1/dashboard/requests/{request_id}/decision", summary="Allow or deny a tool call")
    async def decide(
        request_id: str,
        body: dict[str, Any] = Body(..., examples=[{"decision": "allow", "note": "once"}]),
    ) -> Response:
        decision = body.get("decision")
        if not isinstance(decision, str):
            raise BadRequest("'decision' is required: 'allow' or 'deny'")
        record = await control.decide(request_id, decision, _note(body), _actor(body))
        return ok(view(record))

    @api.post("/v1/dashboard/requests/{request_id}/answer", summary="Answer an agent's questions")
    async def answer(
        request_id: str,
        body: dict[str, Any] = Body(..., examples=[{"answers": {"Which file?": "a.txt"}}]),
    ) -> Response:
        if "answers" not in body:
            raise BadRequest("'answers' is required")
        record = await control.answer(request_id, body["answers"], _actor(body))
        return ok(view(record))

    @api.post(
        "/v1/dashboard/agents/{agent_id:path}/tools/{call_id}/control",
        summary="Pause, resume or cancel a running tool call",
    )
    async def tool_control(
        agent_id: str,
        call_id: str,
        body: dict[str, Any] = Body(..., examples=[{"action": "cancel", "note": "too slow"}]),
    ) -> Response:
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("'action' is required: pause, resume or cancel")
        record = await control.control_tool(agent_id, call_id, action, _note(body), _actor(body))
        return ok(view(record))

    @api.get("/v1/dashboard/audit", summary="The audit log of requests and decisions")
    async def audit(
        agent_id: str | None = None,
        request_id: str | None = None,
        limit: str | None = Query(None, description="1..1000, default 100"),
    ) -> Response:
        rows = await studio.run_sync(
            lambda: studio.store.audit(
                agent_id=agent_id, request_id=request_id, limit=clamp_limit(limit)
            )
        )
        return ok(
            {
                "entries": [
                    {
                        "id": r.id,
                        "timestamp": iso_ms(r.ts),
                        "actor": r.actor,
                        "action": r.action,
                        "request_id": r.request_id,
                        "agent_id": r.agent_id,
                        "detail": r.detail,
                    }
                    for r in rows
                ]
            }
        )

    return api
