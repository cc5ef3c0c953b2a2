"""Tool spans, paired by call id and timed by the agent's own measure where it gave one; traces
filtered by status."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from aster_studio import store as ops
from aster_studio.api import metrics
from aster_studio.api.metrics import tool_spans
from aster_studio.models import StoredEvent
from aster_studio.store import SqliteStore
from tests.support.api import data_of, in_process


def tool(
    i: int, kind: str, call_id: str, ts: int, client_ts: int | None, **extra: object
) -> StoredEvent:
    call: dict[str, object] = {"id": call_id, "name": "fetch"}
    if call_id == "catalogue":  # EVENTS.md's call times, 3 s apart
        call["started_at"] = "2025-01-01T00:00:00Z"
        if kind == "tool:end":
            call["updated_at"] = "2025-01-01T00:00:03Z"
    body = {"event_type": kind, "call": call, **extra}
    return StoredEvent(i, "a", "s", "progress", kind, None, ts, client_ts, orjson.dumps(body))


def test_a_span_lasts_what_the_agent_measured() -> None:
    """Sent in one batch, a 2.5 s call arrived within a millisecond of its start: its length
    was the receive times' 1 ms (a tool latency of 0), not the agent's 2,500."""
    spans = tool_spans(
        [
            tool(1, "tool:start", "given", 1_000, None),
            tool(2, "tool:end", "given", 1_001, None, duration_ms=2_500),
            tool(3, "tool:start", "clocked", 1_000, 50_000),
            tool(4, "tool:error", "clocked", 1_001, 50_400),
            tool(5, "tool:start", "received", 1_000, None),
            tool(6, "tool:end", "received", 1_300, 90_000),  # one own time: not comparable
            tool(7, "tool:start", "open", 1_000, 1),
            tool(8, "tool:start", "catalogue", 1_000, None),
            tool(9, "tool:end", "catalogue", 1_001, None),
        ]
    )
    lengths = {s["id"]: None if s["end_ms"] is None else s["end_ms"] - s["start_ms"] for s in spans}
    assert lengths == {
        "given": 2_500,
        "clocked": 400,
        "received": 300,
        "open": None,
        "catalogue": 3_000,
    }
    states = ["completed", "failed", "completed", "executing", "completed"]
    assert [s["state"] for s in spans] == states
    assert all(set(s) == set(spans[0]) for s in spans)


async def test_traces_filter_by_status_over_every_session_before_paging(tmp_path: Path) -> None:
    """`traces?status=ok|error` read the newest 5,000 sessions at most, 200 at a time, and
    filtered them for a page: error traces further down were never found, a page past the
    5,000th match was empty, and `total` counted the matches read so far."""
    path = tmp_path / "t.db"
    failed = [f"e{i:02d}" for i in range(30)]  # the oldest
    completed = [f"k{i:04d}" for i in range(5_020)]
    store = SqliteStore(path, synchronous="NORMAL")
    store.open()
    try:
        store.write([ops.UpsertAgent("a", 1)])
        store.write([ops.UpsertSession(s, "a", 1) for s in failed + completed])
        store.write(
            [ops.EndSession(s, "failed", 100 + i) for i, s in enumerate(failed)]
            + [ops.EndSession(s, "completed", 1_000 + i) for i, s in enumerate(completed)]
        )
    finally:
        store.close()
    async with in_process(SqliteStore(path, synchronous="NORMAL")) as http:
        seen: list[str] = []
        for offset in range(0, 30, 7):
            page = await data_of(http, f"/v1/dashboard/traces?status=error&limit=7&offset={offset}")
            assert (page["total"], page["has_more"]) == (30, offset + 7 < 30)
            assert {t["status"] for t in page["traces"]} == {"error"}
            seen += [t["id"] for t in page["traces"]]
        assert seen == failed[::-1]  # newest activity first
        page = await data_of(http, "/v1/dashboard/traces?status=ok&limit=10&offset=5000")
        assert (page["total"], page["has_more"]) == (5_020, True)
        assert [t["id"] for t in page["traces"]] == completed[19:9:-1]
        assert {t["status"] for t in page["traces"]} == {"ok"}
        running = await data_of(http, "/v1/dashboard/traces?status=running")
        assert (running["traces"], running["total"], running["has_more"]) == ([], 0, False)


async def test_latency_is_measured_over_the_newest_events_of_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan read the window's oldest events: past its limit, a slowdown now never showed
    (60,000 steps of 100 ms, then 20,000 of 10 s: 100 ms reported)."""
    monkeypatch.setattr(metrics, "SCAN_LIMIT", 10)
    path = tmp_path / "m.db"
    store = SqliteStore(path, synchronous="NORMAL")
    store.open()
    now = int(time.time() * 1000)
    steps = [
        StoredEvent(
            i,
            "a",
            "s",
            "progress",
            "step_complete",
            None,
            now - 60_000 + i,
            None,
            orjson.dumps(
                {"event_type": "step_complete", "duration_ms": 100 if i <= 30 else 10_000}
            ),
        )
        for i in range(1, 41)
    ]
    store.write([ops.UpsertAgent("a", now - 60_000), *steps])
    store.close()
    async with in_process(SqliteStore(path, synchronous="NORMAL")) as http:
        performance = await data_of(http, "/v1/dashboard/metrics/performance?period=1h")
    assert performance["step_latency"]["count"] == 10
    assert performance["step_latency"]["avg"] == 10_000


async def test_a_slow_routes_figures_are_reused_a_while_and_a_fast_ones_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every open Overview tab made the server scan a big store's window again (1.2 to 2.1 s
    at 3.6 M events, 28% of a core for one idle tab): a slow figure is reused a little while."""
    path = tmp_path / "r.db"
    store = SqliteStore(path, synchronous="NORMAL")
    store.open()
    now = int(time.time() * 1000)
    store.write([ops.UpsertAgent("a", now)])
    store.close()
    async with in_process(SqliteStore(path, synchronous="NORMAL")) as http:
        monkeypatch.setattr(metrics, "SLOW_S", 60.0)  # however loaded the machine
        first = await data_of(http, "/v1/dashboard/overview")
        await asyncio.sleep(0.01)
        again = await data_of(http, "/v1/dashboard/overview")
        assert again["updated_at"] > first["updated_at"]  # fast: computed each time
        monkeypatch.setattr(metrics, "SLOW_S", 0.0)  # as if every computation were slow
        monkeypatch.setattr(metrics, "REUSE_FACTOR", 1_000_000)
        await asyncio.sleep(0.01)
        slow = await data_of(http, "/v1/dashboard/overview")
        await asyncio.sleep(0.01)
        assert await data_of(http, "/v1/dashboard/overview") == slow  # reused
        other = await data_of(http, "/v1/dashboard/overview?period=1h")
        assert other["period"] == "1h"  # another question, another answer
