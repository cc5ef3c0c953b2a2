"""HTTP and WebSocket routes; one module per resource, mounted by `mount_routes`."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from ..app import Studio
from . import agents, control, events, health, login, metrics, pricing, remote, sessions, stream
from ._common import fail, install_error_handlers
from .schemas import describe

log = logging.getLogger(__name__)


API_BROWSER = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Aster Studio API</title>
<link rel="icon" href="/studio/favicon.svg">
<link rel="stylesheet" href="/studio/swagger/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/studio/swagger/swagger-ui-bundle.js"></script>
<script src="/studio/swagger/init.js"></script></body>
</html>
"""


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

    @app.get("/docs", include_in_schema=False)
    async def api_browser() -> Response:
        """Swagger UI on /openapi.json, from the console's own files (web/vite.config.ts):
        no CDN, so it works offline, and no inline script, so the CSP holds here too."""
        if not (static_dir / "swagger" / "swagger-ui-bundle.js").is_file():
            return fail(503, "console_not_built", "The API browser is built with the console.")
        return HTMLResponse(API_BROWSER)

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
