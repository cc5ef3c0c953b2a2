"""Small REST helpers for tests: GET/PUT with the `{success, data}` envelope unwrapped."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from aster_studio.app import create_app
from aster_studio.config import Settings
from aster_studio.store import SqliteStore


def call(base: str, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """Return (status, parsed JSON body) for a request; errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def get(base: str, path: str) -> Any:
    """GET a route and return its `data`; fail loudly on an error envelope."""
    status, body = call(base, path)
    assert status == 200 and body["success"] is True, (status, body)
    return body["data"]


def wait_for(fetch: Any, predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `fetch()` until `predicate(value)` holds; return the value or fail with the last."""
    import time

    deadline = time.monotonic() + timeout
    value = fetch()
    while not predicate(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)
        value = fetch()
    return value


def events(base: str, query: str = "") -> list[dict[str, Any]]:
    """All stored events matching `query`, oldest first (follows pagination)."""
    found: list[dict[str, Any]] = []
    cursor = 0
    while True:
        sep = "&" if query else ""
        page = get(base, f"/v1/dashboard/events/since/{cursor}?limit=1000{sep}{query}")
        found.extend(page["events"])
        if not page["has_more"]:
            return found
        cursor = page["next_cursor"]


@asynccontextmanager
async def in_process(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    """Start a Studio over `store` in this process and yield a client of its REST API."""
    app = create_app(Settings(db=str(store.path)), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def data_of(http: httpx.AsyncClient, path: str) -> Any:
    """GET a route in process and return its `data`; fail loudly on an error envelope."""
    response = await http.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def tokens(
    input: int,
    output: int,
    *,
    cache_read: int = 0,
    cache_creation: int = 0,
    reasoning: int = 0,
) -> dict[str, int]:
    """The API's token counts object: `total` adds every kind but reasoning (part of output)."""
    return {
        "input": input,
        "output": output,
        "total": input + output + cache_read + cache_creation,
        "cache_read": cache_read,
        "cache_creation": cache_creation,
        "reasoning": reasoning,
    }
