"""Agent views on the live stream: each at most every VIEW_INTERVAL_S, many spread over ticks."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import orjson

from aster_studio.app import Studio, wall_clock_ms
from aster_studio.config import Settings
from aster_studio.ingest.service import VIEW_INTERVAL_S, VIEW_SLOTS
from aster_studio.store import SqliteStore
from tests.support.timing import UNIT

AGENTS = 50


def event_frame(agent_id: str) -> str:
    message = {"type": "event", "agent_id": agent_id, "event": {"type": "text_chunk"}}
    return orjson.dumps(message).decode()


async def watch_views(
    tmp_path: Path, seconds: float, every: float | None
) -> dict[str, list[float]]:
    """Send one event for each of AGENTS agents, then again every `every` seconds if set, for
    `seconds`; the loop times at which each agent's view reached a batch-mode subscriber."""
    studio = Studio(settings=Settings(), store=SqliteStore(tmp_path / "v.db"), clock=wall_clock_ms)
    ingest, bus = studio.ingest, studio.bus
    sub = bus.subscribe()
    sub.active = sub.batch = True
    conn = ingest.open_connection("test")
    conn.tokens = float("inf")
    ids = [f"agent-{i:02d}" for i in range(AGENTS)]
    frames = [event_frame(agent_id) for agent_id in ids]
    seen: dict[str, list[float]] = defaultdict(list)
    loop = asyncio.get_running_loop()
    end = time.monotonic() + seconds
    next_send = 0.0
    while time.monotonic() < end:
        if next_send is not None and time.monotonic() >= next_send:
            for frame in frames:
                await ingest.handle_text(conn, frame)
            next_send = time.monotonic() + every if every else None
        _, updates, _ = sub.take()
        for kind, agent_id in updates:
            assert kind == "agent"
            seen[agent_id].append(loop.time())
        await asyncio.sleep(0.001)
    return seen


async def test_many_agents_views_go_out_over_several_ticks_each_within_the_interval(
    tmp_path: Path,
) -> None:
    start = asyncio.get_running_loop().time()
    seen = await watch_views(tmp_path, seconds=VIEW_INTERVAL_S + 0.3 * UNIT, every=None)
    assert sorted(seen) == [f"agent-{i:02d}" for i in range(AGENTS)]
    assert all(len(times) == 1 for times in seen.values())
    assert max(times[0] for times in seen.values()) - start <= VIEW_INTERVAL_S + 0.1 * UNIT
    # All at once, fifty views would be built and sent in one go; dealt into slots, a tick
    # carries a slot's share. A stalled loop can merge ticks, hence fewer than VIEW_SLOTS.
    ticks = {round(times[0], 3) for times in seen.values()}
    assert len(ticks) >= VIEW_SLOTS // 2


async def test_a_busy_agents_view_goes_out_at_most_once_an_interval(tmp_path: Path) -> None:
    seen = await watch_views(tmp_path, seconds=4 * VIEW_INTERVAL_S, every=0.01)
    assert len(seen) == AGENTS
    for times in seen.values():
        assert len(times) >= 2  # still changing: the next view follows
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= VIEW_INTERVAL_S * 0.95


def test_a_views_timer_that_uvloop_made_a_plain_handle_is_no_error(tmp_path: Path) -> None:
    """uvloop's `call_at` returns a plain Handle (no `when()`) for a time less than half a
    millisecond away: `_flush_views` sets its next tick after publishing, which under load
    took longer than the tick was away, and the next agent's change raised AttributeError,
    which closed its connection with 1011 and lost its events."""
    import uvloop

    async def main() -> None:
        studio = Studio(
            settings=Settings(), store=SqliteStore(tmp_path / "u.db"), clock=wall_clock_ms
        )
        ingest = studio.ingest
        sub = studio.bus.subscribe()
        sub.active = sub.batch = True
        conn = ingest.open_connection("test")
        conn.tokens = float("inf")
        loop = asyncio.get_running_loop()
        handle = loop.call_at(loop.time(), lambda: None)
        assert not hasattr(handle, "when")  # what uvloop hands back for a time that has come
        await ingest.handle_text(conn, event_frame("first"))  # sets the views' timer
        ingest._views_timer.cancel()
        ingest._views_timer = loop.call_at(loop.time(), ingest._flush_views)
        for i in range(VIEW_SLOTS):  # a change in another slot compares the timers
            await ingest.handle_text(conn, event_frame(f"next-{i}"))
        seen: set[str] = set()
        deadline = time.monotonic() + 2 * VIEW_INTERVAL_S + 1 * UNIT
        while len(seen) < VIEW_SLOTS + 1 and time.monotonic() < deadline:
            seen |= {agent_id for _, agent_id in sub.take()[1]}
            await asyncio.sleep(0.005)
        assert seen == {"first", *(f"next-{i}" for i in range(VIEW_SLOTS))}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
