"""The agent endpoint `/v1/remote-agents/connect`: glue between the socket and IngestService."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from aster_studio_sdk.protocol import CloseCode

from ..app import Studio
from ..ws_protocol import TEXT_FRAMES
from ._common import ok

log = logging.getLogger(__name__)

GREETING = (
    '{"type":"connected","payload":{"message":"Connected to Aster Studio Remote Agent Service"}}'
)


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    ingest = studio.ingest

    settings = studio.settings

    async def connect(ws: WebSocket) -> None:
        await ws.accept()
        if len(ingest.connections) >= settings.max_agent_connections:
            ingest.stats.refused += 1
            await ws.close(CloseCode.TRY_AGAIN_LATER, "too many agent connections")
            return
        client = ws.client
        conn = ingest.open_connection(f"{client.host}:{client.port}" if client else "?")
        conn.key = ws.scope.get("state", {}).get("agent_key")

        async def close(code: int, reason: str) -> None:
            await ws.close(code, reason)

        await ws.send_text(GREETING)
        conn.attach(ws.send_text, close)
        # Our protocol's receive, without Starlette's per-message state checks: this loop ends
        # at the first disconnect, and nothing reads the socket after it.
        frames = ws.scope.get("extensions", {}).get(TEXT_FRAMES)
        receive = frames["receive"] if frames else ws.receive
        try:
            # A peer that connects but never speaks is dropped after the handshake timeout.
            first = True
            while True:
                if first:
                    try:
                        message = await asyncio.wait_for(receive(), settings.handshake_timeout_s)
                    except TimeoutError:
                        await ws.close(CloseCode.POLICY_VIOLATION, "no message within timeout")
                        break
                    first = False
                else:
                    message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is not None:
                    await ingest.handle_text(conn, text)
                elif message.get("invalid_utf8"):
                    await ingest.handle_invalid_text(conn, message["bytes"])
                else:
                    await ingest.handle_binary(conn)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the peer went away; what it sent is already queued for storage
        finally:
            await conn.detach()
            ingest.close_connection(conn)

    # A plain Starlette route: FastAPI's dependency machinery costs kilobytes per connection
    # (exit stacks, scope copies) and this endpoint needs none of it; 10,000 idle agents is
    # the target.
    api.add_websocket_route("/v1/remote-agents/connect", connect)

    @api.get("/v1/remote-agents/stats", summary="Connected remote agents (original Studio shape)")
    async def stats() -> object:
        agents = []
        for agent in studio.registry.agents.values():
            if agent.connection is None:
                continue
            agents.append(
                {
                    "agent_id": agent.id,
                    "status": {
                        "agent_id": agent.id,
                        "state": agent.state,
                        "step_count": 0,
                        "last_sfp_index": 0,
                        "last_bookmark": None,
                        "cursor": agent.event_count,
                        "breakpoint": {"enabled": False},
                    },
                    "metadata": {
                        **agent.metadata,
                        "name": agent.name or agent.id,
                        "remote": True,
                        "source": "remote_agent",
                    },
                }
            )
        return ok({"remote_agents_count": len(agents), "agents": agents})

    return api
