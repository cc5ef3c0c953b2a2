"""HEAD is answered wherever GET is: same status and headers, no body."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from aster_studio import store as ops
from aster_studio.models import StoredEvent
from aster_studio.store import SqliteStore
from tests.support.api import in_process

PATHS = [
    "/healthz",
    "/health",
    "/metrics",
    "/openapi.json",
    "/v1/dashboard/overview",
    "/v1/dashboard/events?limit=2",
    "/v1/dashboard/events/export?format=csv",
    "/v1/dashboard/events/export?format=jsonl",
    "/v1/dashboard/sessions/nope",  # a 404 is a 404 to HEAD too
    "/v1/dashboard/pricing/gpt-4o",  # DELETE only: 405
]

# Headers whose value is the time or a measure of it, not the response's.
CHANGING = {"date", "content-length"}


def _seeded(path: Path, events: int = 5) -> SqliteStore:
    store = SqliteStore(path, synchronous="NORMAL")
    store.open()
    store.write(
        [
            ops.UpsertAgent("a", 1),
            *(
                StoredEvent(i, "a", None, "progress", "text_chunk", None, 1_000 + i, None, b"{}")
                for i in range(1, events + 1)
            ),
        ]
    )
    store.close()
    return SqliteStore(path, synchronous="NORMAL")


@pytest.mark.parametrize("path", PATHS)
async def test_head_answers_as_get_without_a_body(tmp_path: Path, path: str) -> None:
    async with in_process(_seeded(tmp_path / "h.db")) as http:
        got = await http.get(path)
        head = await http.head(path)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    same = {k: v for k, v in head.headers.items() if k not in CHANGING}
    assert same == {k: v for k, v in got.headers.items() if k not in CHANGING}
    if "content-length" in got.headers and path not in ("/healthz", "/health", "/metrics"):
        assert head.headers["content-length"] == got.headers["content-length"]


class CountingReads:
    """A store that counts its `events_after` reads (a compiled store's methods cannot be
    replaced on it, so this wraps it)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.reads = 0

    def events_after(self, *args: Any) -> list[StoredEvent]:
        self.reads += 1
        return self._store.events_after(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_head_of_an_export_reads_no_more_than_its_first_page(tmp_path: Path) -> None:
    store = CountingReads(_seeded(tmp_path / "h.db", events=4_500))  # three pages to a GET
    async with in_process(store) as http:  # type: ignore[arg-type]
        head = await http.head("/v1/dashboard/events/export?format=jsonl")
        assert (head.status_code, head.content, store.reads) == (200, b"", 1)
        got = await http.get("/v1/dashboard/events/export?format=jsonl")
        assert len(got.content.splitlines()) == 4_500 and store.reads == 1 + 4  # and an empty page


async def test_healthz_answers_while_every_pool_thread_is_busy(tmp_path: Path) -> None:
    """The store check queued in the shared thread pool behind a big store's heavy reads:
    3.1 s with eight of them running, and a probe took the Studio for down."""
    loop = asyncio.get_running_loop()
    async with in_process(_seeded(tmp_path / "h.db")) as http:
        busy = [loop.run_in_executor(None, time.sleep, 1) for _ in range(12)]  # twice what it has
        await asyncio.sleep(0.1)
        started = time.monotonic()
        response = await http.get("/healthz")
        took = time.monotonic() - started
        await asyncio.gather(*busy)
    assert response.status_code == 200
    assert took < 0.8, took  # behind them: 1 s at least
