"""The console's live stream `/v1/dashboard/events/stream`: subscribe, replay, then live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ..app import Studio
from ..live.bus import (
    BUSY_SEND,
    LEVELS,
    SEND_INTERVAL_S,
    StreamFilter,
    StreamFlush,
    Subscriber,
    event_item,
    stream_frame,
)
from ..models import INT64_MAX, EventFilter, StoredEvent, iso_ms
from ..ws_protocol import TEXT_FRAMES
from .events import items_json

log = logging.getLogger(__name__)

REPLAY_PAGE = 1_000
# A replay page's payloads: pages start small and grow to REPLAY_PAGE events while they stay
# under this, and shrink when they do not (800 KB events made 800 MB pages, and a client
# resubscribing in a loop held gigabytes).
REPLAY_PAGE_BYTES = 4 << 20
REPLAY_FIRST_PAGE = 16
STATS_EVERY_S = 10.0


def next_page_size(size: int, page_bytes: int) -> int:
    """The size of the replay's next page, from the bytes of one of `size` events."""
    if page_bytes <= REPLAY_PAGE_BYTES // 4:
        return min(REPLAY_PAGE, size * 4)
    return max(1, min(REPLAY_PAGE, size * REPLAY_PAGE_BYTES // page_bytes))


def _frame(kind: str, payload: Any, **extra: Any) -> str:
    return stream_frame(kind, payload, **extra).decode()


def _strings(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"filters.{name} must be a list of strings")
    return value


def parse_filters(raw: Any) -> tuple[StreamFilter, dict[str, Any]]:
    """Read a subscribe message's filters; missing lists mean no filter (as the original)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError("filters must be an object")
    channels = _strings(raw.get("channels"), "channels")
    types = _strings(raw.get("event_types"), "event_types")
    agents = _strings(raw.get("agent_ids"), "agent_ids")
    sessions = _strings(raw.get("session_ids"), "session_ids")
    level = raw.get("min_level")
    if level is not None and level not in LEVELS:
        raise ValueError(f"filters.min_level must be one of {', '.join(LEVELS)}")
    flt = StreamFilter(
        channels=frozenset(c.lower() for c in channels or ()),
        event_types=frozenset(t.lower() for t in types or ()),
        agent_ids=frozenset(agents or ()),
        session_ids=frozenset(sessions or ()),
        min_level=LEVELS[level] if level else 0,
    )
    echo = {
        "channels": channels,
        "event_types": types,
        "agent_ids": agents,
        "session_ids": sessions,
    }
    return flt, echo


def store_filter(flt: StreamFilter) -> EventFilter:
    return EventFilter(
        agent_ids=tuple(flt.agent_ids) or None,
        session_ids=tuple(flt.session_ids) or None,
        channels=tuple(flt.channels) or None,
        event_types=tuple(flt.event_types) or None,
    )


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    bus = studio.bus

    @api.websocket("/v1/dashboard/events/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        studio.dashboard_connections += 1
        sub = bus.subscribe()
        sub.filter = StreamFilter(channels=frozenset({"monitor"}))  # the original's default
        sub.active = True
        connected_at = iso_ms(studio.clock())
        lock = asyncio.Lock()

        def agent_count() -> int:
            """The connected agents the filter follows (the original's current agents)."""
            agents = studio.registry.agents
            wanted = sub.filter.agent_ids or agents
            return sum(1 for a in wanted if a in agents and agents[a].connection is not None)

        def stats() -> str:
            body = {
                "connected_at": connected_at,
                "subscribed_agents": agent_count(),
                "events_received": sub.received,
                "events_filtered": sub.filtered,
            }
            return _frame("stats", body, stats=body)

        text_frames = ws.scope.get("extensions", {}).get(TEXT_FRAMES)
        send_bytes = text_frames["send"] if text_frames else None

        async def send_batch(events: list[tuple[int, bytes]], views: Iterable[bytes]) -> None:
            """One `events` frame and each changed view's frame, in one write if we can."""
            frames = [bus.events_frame(events, shared=sub.filter.everything)] if events else []
            frames += views
            if not frames:
                return
            if send_bytes is not None:
                await send_bytes(*frames)
            else:
                for frame in frames:
                    await ws.send_text(frame.decode())

        loop = asyncio.get_running_loop()
        stats_timer: asyncio.TimerHandle | None = None

        if text_frames is not None and "send_now" in text_frames:
            # In batch mode the bus's flush sends what waits, on the loop, while the task is
            # not sending: a task switch per send cost more than the send's own Python.
            sub.flush = StreamFlush(bus, sub, text_frames["send_now"], lock.locked)

        def stats_tick() -> None:
            nonlocal stats_timer
            sub.notice_due = True
            sub.wake.set()
            stats_timer = loop.call_later(STATS_EVERY_S, stats_tick)

        stats_timer = loop.call_later(STATS_EVERY_S, stats_tick)

        async def sender() -> None:
            sent_at = 0.0
            busy = False
            while True:
                await sub.wake.wait()
                wait = sent_at + SEND_INTERVAL_S - loop.time()
                if busy and wait > 0:
                    await asyncio.sleep(wait)  # more events join this send meanwhile
                sent_at = loop.time()
                async with lock:
                    events, updates, dropped = sub.take()
                    busy = len(events) >= BUSY_SEND
                    studio.stream_dropped += dropped
                    if dropped:
                        await ws.send_text(
                            _frame(
                                "dropped",
                                {
                                    "count": dropped,
                                    "message": "client too slow; reload from history",
                                },
                            )
                        )
                    if sub.batch:
                        await send_batch(events, updates.values())
                    else:
                        for _, item in events:
                            await ws.send_text('{"type":"event","payload":' + item.decode() + "}")
                    if sub.notice_due:
                        sub.notice_due = False
                        await ws.send_text(stats())

        replaying: asyncio.Task[None] | None = None
        # The replay's store read under way: it runs in a thread, which cancelling the replay
        # does not stop, so the next replay waits for it rather than read beside it.
        reading: asyncio.Future[list[StoredEvent]] | None = None

        async def stop_replay() -> None:
            """End the replay under way, if any: a new subscribe or an unsubscribe replaces it
            (it held every client message until it had sent all, minutes for a large store)."""
            nonlocal replaying
            task, replaying = replaying, None
            if task is not None and not task.done():
                # What waits was published during the replay, past what it has sent: sent
                # now it would leave a gap. The next subscription starts afresh.
                sub.active = False
                sub.clear()
                task.cancel()
                await asyncio.wait([task])
            if task is not None and not task.cancelled():
                task.exception()  # retrieved: a send that failed ends the connection anyway
            if reading is not None:
                await asyncio.wait([reading])
                if not reading.cancelled():
                    reading.exception()

        async def subscribe(msg: dict[str, Any]) -> None:
            nonlocal replaying
            try:
                flt, echo = parse_filters(msg.get("filters"))
                since = msg.get("since")
                if since is not None and (
                    isinstance(since, bool)
                    or not isinstance(since, int)
                    or not -INT64_MAX <= since <= INT64_MAX
                ):
                    raise ValueError("since must be an integer cursor (64 bits)")
            except ValueError as exc:
                await error("bad_request", str(exc))
                return
            await stop_replay()
            # Held from the reply to the end of the replay, which a task of its own runs: no
            # live event goes out in between, and client messages are read meanwhile.
            await lock.acquire()
            handed_over = False
            try:
                sub.filter = flt
                sub.active = True
                sub.batch = bool(msg.get("batch"))
                sub.clear()
                sub.floor = 0
                reply: dict[str, Any] = {**echo, "agent_count": agent_count()}
                newest = studio.ingest.next_event_id - 1
                if since is not None and since > newest:
                    # A cursor of another (or an emptied) database: replaying after it would
                    # mute every event until the cursors pass it. Follow from now, and say so.
                    reply["since_reset"] = {"since": since, "cursor": newest}
                await ws.send_text(_frame("subscribed", reply))
                if since is None:
                    await ws.send_text(stats())
                elif since > newest:
                    await ws.send_text(_frame("replayed", {"cursor": newest, "count": 0}))
                    await ws.send_text(stats())
                else:
                    replaying = asyncio.create_task(replay_then_stats(flt, since))
                    # Released however it ends, even cancelled before it started.
                    replaying.add_done_callback(lambda _: lock.release())
                    handed_over = True
            finally:
                if not handed_over:
                    lock.release()

        async def replay_then_stats(flt: StreamFilter, since: int) -> None:
            await replay(flt, since)
            await ws.send_text(stats())

        async def replay(flt: StreamFilter, since: int) -> None:
            nonlocal reading
            last, sent, size = since, 0, REPLAY_FIRST_PAGE
            covered = 0  # every event up to this id was committed before the last store read
            query = store_filter(flt)
            while True:  # to the end, however far: stopping short would leave a gap
                reading = asyncio.ensure_future(
                    studio.run_sync(studio.store.events_after, query, last, size)
                )
                page = await asyncio.shield(reading)
                full = len(page) == size
                size = next_page_size(size, sum(len(e.payload) for e in page))
                if page:
                    last = page[-1].id  # the store filtered by these ids already
                if not full:
                    # The store is read to its end, and had every match up to `covered`; the
                    # rest is in the bus's tail (events live but not yet committed), unless
                    # more was committed and left the tail meanwhile: then read again.
                    last = max(last, covered)
                    tail = bus.recent_after(last)
                    if tail is None:
                        covered = bus.trimmed_through
                        if page:
                            sent += await send_page([e for e in page if flt.matches(e)])
                        continue
                    page += tail
                page = [e for e in page if flt.matches(e)]
                if page:
                    last = page[-1].id
                    sent += await send_page(page)
                if not full:
                    break
            # Events published during the replay are both sent and queued: from now on only
            # cursors past the last one sent go out.
            sub.raise_floor(last)
            await ws.send_text(_frame("replayed", {"cursor": last, "count": sent}))

        async def send_page(page: list[StoredEvent]) -> int:
            if sub.batch:
                await ws.send_text(
                    '{"type":"events","payload":'
                    + items_json(page, data_key="data").decode()
                    + ',"replay":true}'
                )
            else:
                for e in page:
                    item = event_item(e, data_key="data").decode()
                    await ws.send_text('{"type":"event","payload":' + item + ',"replay":true}')
            return len(page)

        async def error(code: str, message: str) -> None:
            await ws.send_text(_frame("error", {"code": code, "message": message}, message=message))

        task = asyncio.create_task(sender())
        try:
            await ws.send_text(
                _frame(
                    "connected",
                    {
                        "connection_id": f"dash-ws-{time.time_ns()}",
                        "message": "Connected to Aster Studio event stream",
                        # Another id after a reconnect: the Studio came back on another
                        # database, and cursors from before mean nothing here.
                        "store_id": studio.store.store_id,
                    },
                )
            )
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                try:
                    msg = orjson.loads(text) if text is not None else None
                except orjson.JSONDecodeError:
                    msg = None
                if not isinstance(msg, dict):
                    await error("invalid_message", "Failed to parse message")
                    continue
                action = msg.get("action")
                if action == "subscribe":
                    await subscribe(msg)
                elif action == "unsubscribe":
                    await stop_replay()
                    async with lock:
                        sub.active = False
                        sub.clear()
                        await ws.send_text(_frame("unsubscribed", None))
                elif action == "ping":  # not behind a replay: a reply needs no order
                    await ws.send_text(_frame("pong", None))
                else:
                    await error("unknown_action", f"Unknown action: {str(action)[:64]}")
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if stats_timer is not None:
                stats_timer.cancel()
            sub.flush = None
            await stop_replay()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            bus.unsubscribe(sub)
            studio.dashboard_connections -= 1

    return api


__all__ = ["Subscriber", "router"]
