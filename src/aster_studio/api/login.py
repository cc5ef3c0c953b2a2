"""Console login: trade the console token for an HttpOnly session cookie and a CSRF token."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from ..app import Studio
from ..auth import SESSION_TTL_S
from ._common import fail, ok
from .guard import COOKIE, headers_of, same_origin, session_cookie, session_id_of

FAILED_LOGIN_DELAY_S = 0.5


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    auth = studio.auth

    @api.get("/v1/auth/session", summary="Is auth on, and is this browser logged in")
    async def session_state(request: Request) -> Response:
        session = await auth.session(session_id_of(headers_of(request.scope)))
        return ok(
            {
                "auth_enabled": auth.enabled,
                "authenticated": not auth.enabled or session is not None,
                "csrf_token": session.csrf if session else None,
            }
        )

    @api.post("/v1/auth/login", summary="Log in with the console token")
    async def login(request: Request, body: dict[str, Any] = Body(...)) -> Response:
        if not same_origin(headers_of(request.scope)):
            return fail(403, "bad_origin", "Cross-origin login refused")
        token = body.get("token")
        result = await auth.login(token if isinstance(token, str) else None)
        if result is None:
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing; tokens are 192-bit
            return fail(401, "invalid_token", "Wrong console token")
        session_id, session = result
        response = ok({"csrf_token": session.csrf, "expires_in_s": SESSION_TTL_S})
        response.headers["set-cookie"] = session_cookie(
            session_id, SESSION_TTL_S, secure=studio.settings.tls
        )
        return response

    @api.post("/v1/auth/logout", summary="End this browser's session")
    async def logout(request: Request) -> Response:
        await auth.logout(session_id_of(headers_of(request.scope)))
        response = ok({"logged_out": True})
        response.headers["set-cookie"] = f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return response

    return api
