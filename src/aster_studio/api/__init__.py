"""HTTP and WebSocket routes; one module per resource, mounted by `mount_routes`."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from ..app import Studio
from . import agents, control, events, health, login, metrics, pricing, remote, sessions, stream
from ._common import fail, install_error_handlers
from .schemas import describe

log = logging.getLogger(__name__)


def mount_routes(app: FastAPI, studio: Studio, static_dir: Path) -> None:
    """Mount every route, the error handlers and the console."""
    install_error_handlers(app)
    modules = (remote, agents, sessions, events, metrics, pricing, control, stream, health, login)
    for module in modules:
        app.include_router(module.router(studio))
    describe(app)
    mount_console(app, static_dir)


def mount_console(app: FastAPI, static_dir: Path) -> None:
    """Serve the built console under /studio/ with an index.html fallback for deep links."""
    index = static_dir / "index.html"
    root = static_dir.resolve()
    if not index.is_file():
        log.warning(
            "the console is not built (%s missing): serving the API only; run `make web`", index
        )

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/studio/")

    @app.get("/studio", include_in_schema=False)
    async def studio_root() -> Response:
        return RedirectResponse("/studio/", status_code=301)

    @app.get("/studio/{path:path}", include_in_schema=False)
    async def console(path: str, request: Request) -> Response:
        if not index.is_file():
            return fail(
                503, "console_not_built", "The console is not built; run `make web`. API is up."
            )
        candidate = (static_dir / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(root):
            cache = (
                "public, max-age=31536000, immutable"
                if "/assets/" in str(candidate)
                else ("no-cache")
            )
            return FileResponse(candidate, headers={"Cache-Control": cache})
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
