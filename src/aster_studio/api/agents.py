"""Agents: our live view (`/v1/dashboard/agents`) and the original console's `/v1/agents`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from aster_studio_sdk.protocol import DEFAULT_LIMITS, too_deep

from .. import store as ops
from ..app import Studio
from ..errors import BadRequest, NotFound
from ..ingest.registry import LiveAgent
from ..models import WORKING_STATES, iso_ms
from ._common import clamp_limit, ok


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    registry = studio.registry

    def get(agent_id: str) -> LiveAgent:
        agent = registry.agents.get(agent_id)
        if agent is None:
            raise NotFound("Agent not found")
        return agent

    @api.get("/v1/dashboard/agents", summary="Every known agent with live status, usage and cost")
    async def list_agents(
        status: str | None = Query(None, description="online, offline, stalled or working"),
        q: str | None = Query(None, description="substring of id, name or model"),
        limit: str | None = Query(None, description="1..10000, default 1000"),
    ) -> Response:
        size = clamp_limit(limit, default=1000, maximum=10_000)
        now = studio.clock()
        views = [a.view(now, studio.stall_after_ms) for a in registry.agents.values()]
        if status:
            wanted = status.lower()
            views = [
                v
                for v in views
                if v["health"] == wanted
                or v["status"] == wanted
                or (  # working and not stalled, as the overview counts them
                    wanted == "working" and v["health"] == "online" and v["state"] in WORKING_STATES
                )
            ]
        if q:
            needle = q.lower()
            views = [
                v
                for v in views
                if needle in v["id"].lower()
                or needle in str(v["name"]).lower()
                or needle in str(v["model"] or "").lower()
            ]
        views.sort(key=lambda v: (v["status"] != "online", v["id"]))
        return ok({"agents": views[:size], "total": len(views)})

    @api.get("/v1/dashboard/agents/{agent_id:path}", summary="One agent's live view")
    async def get_agent(agent_id: str) -> Response:
        return ok(get(agent_id).view(studio.clock(), studio.stall_after_ms))

    def record(agent: LiveAgent) -> dict[str, Any]:
        """The original console's AgentRecord; `status` must be active|disabled|archived."""
        metadata = {
            **agent.metadata,
            "name": agent.name or agent.id,
            "remote": True,
            "source": "remote_agent",
        }
        model_config = {"model": agent.model} if agent.model else {}
        return {
            "id": agent.id,
            "status": "active" if agent.connection is not None else "disabled",
            "created_at": iso_ms(agent.registered_at),
            "updated_at": iso_ms(agent.last_seen),
            "config": {
                "agent_id": agent.id,
                "template_id": agent.template_id or "",
                "model_config": model_config,
                "tools": list(agent.capabilities),
                "metadata": metadata,
            },
            "metadata": metadata,
        }

    @api.get("/v1/agents", summary="Agents as the original console lists them (a bare array)")
    async def list_records() -> Response:
        return ok([record(a) for a in registry.agents.values()])

    @api.get("/v1/agents/{agent_id:path}", summary="One agent record (original console shape)")
    async def get_record(agent_id: str) -> Response:
        return ok(record(get(agent_id)))

    @api.patch("/v1/agents/{agent_id:path}", summary="Rename an agent or merge metadata")
    async def patch_record(
        agent_id: str, body: dict[str, Any] = Body(..., examples=[{"name": "writer"}])
    ) -> Response:
        agent = get(agent_id)
        name = body.get("name")
        metadata = body.get("metadata")
        if name is not None and not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequest("'metadata' must be an object")
        # As an agent's own metadata: nested past the protocol's limit it could not be written
        # out again, and every list of agents failed on it.
        if metadata and too_deep(metadata, DEFAULT_LIMITS.max_depth - 1, 1 << 20):
            raise BadRequest(f"'metadata' nests more than {DEFAULT_LIMITS.max_depth - 1} levels")
        if name:
            agent.name = name
        if metadata:
            agent.metadata = {**agent.metadata, **metadata}
        if studio.pipeline is not None:
            # Only what was edited: storing the registration again moved the agent's last
            # contact to now and made an implicit agent a registered one.
            studio.pipeline.submit([ops.EditAgent(agent.id, agent.name, agent.metadata)])
            await studio.pipeline.barrier()
        return ok(record(agent))

    @api.delete(
        "/v1/agents/{agent_id:path}", status_code=204, summary="Forget an agent (events stay)"
    )
    async def delete_record(agent_id: str) -> Response:
        agent = get(agent_id)
        if agent.connection is not None:
            raise BadRequest("agent is connected; it can be deleted once offline")
        registry.forget(agent_id)
        if studio.pipeline is not None:
            studio.pipeline.submit([ops.DeleteAgent(agent_id)])
            await studio.pipeline.barrier()
        return Response(status_code=204)

    return api
