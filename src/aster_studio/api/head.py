"""HEAD wherever GET is: RFC 9110 asks it of every server, and uptime checkers send it.

The framework routes HEAD nowhere (`/healthz` answered 405, so a HEAD probe saw the Studio
down). Here a HEAD request is served as the GET it stands for, with the same status and
headers, and no body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _HeadersSent(Exception):
    """Ends a streamed response once its headers went out: a HEAD needs none of its body."""


class HeadAsGet:
    """Answer HEAD as GET without the body; every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
                return
            if not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            if message.get("more_body", False):
                # A stream (an export) would otherwise be read to its end for nothing.
                raise _HeadersSent

        try:
            await self.app({**scope, "method": "GET"}, receive, headers_only)
        except* _HeadersSent:
            pass


__all__ = ["HeadAsGet"]
