"""The live bus: filters, bounded per-subscriber queues, floors, agent changes."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest import MonkeyPatch

from aster_studio.live import bus as bus_module
from aster_studio.live.bus import (
    BUSY_SEND,
    SEND_INTERVAL_S,
    LiveBus,
    StreamFilter,
    StreamFlush,
    Subscriber,
    event_item,
    event_items,
)
from aster_studio.models import StoredEvent, iso_ms


def stored(i: int, agent: str = "a", etype: str = "x", severity: str | None = None) -> StoredEvent:
    return StoredEvent(i, agent, None, "progress", etype, severity, 1000, None, b'{"i":%d}' % i)


def test_event_item_splices_the_raw_payload() -> None:
    item = orjson.loads(event_item(stored(7), data_key="data"))
    assert item["cursor"] == 7 and item["data"] == {"i": 7}
    assert item["timestamp"] == "1970-01-01T00:00:01.000Z"


def test_inactive_subscriber_gets_nothing() -> None:
    bus = LiveBus()
    sub = bus.subscribe()
    bus.publish([stored(1)])
    assert not sub.pending


def test_filter_matches_agent_type_and_level() -> None:
    bus = LiveBus()
    sub = bus.subscribe()
    sub.active = True
    sub.filter = StreamFilter(agent_ids=frozenset({"b"}), min_level=3)
    bus.publish(
        [
            stored(1, "a"),
            stored(2, "b", severity="warn"),
            stored(3, "b", severity="error"),
            stored(4, "b", severity="CRITICAL"),
        ]
    )
    assert [c for c, _ in sub.pending] == [3, 4]
    assert (sub.received, sub.filtered) == (4, 2)


def test_an_event_without_severity_is_info_for_min_level_and_an_error_event_an_error() -> None:
    """`min_level: "error"` let every text chunk and tool event through: they carry no
    severity. An `error` event without one is an error, as in every error count."""
    events = [
        stored(1, etype="text_chunk"),
        stored(2, etype="error"),
        stored(3, etype="Error", severity="notice"),
        stored(4, etype="log", severity="debug"),
    ]
    passed = {
        level: [e.id for e in events if StreamFilter(min_level=level).matches(e)]
        for level in (0, 1, 2, 3)
    }
    assert passed == {0: [1, 2, 3, 4], 1: [1, 2, 3], 2: [2], 3: [2]}


def test_queue_is_bounded_and_counts_drops() -> None:
    bus = LiveBus(subscriber_capacity=3)
    sub = bus.subscribe()
    sub.active = True
    bus.publish([stored(i) for i in range(1, 11)])
    events, _, dropped = sub.take()
    assert [c for c, _ in events] == [8, 9, 10]
    assert dropped == 7


def big(i: int, size: int) -> StoredEvent:
    """An event whose payload is `size` bytes."""
    payload = b'{"i":%d,"s":"' % i
    payload += b"x" * (size - len(payload) - 2) + b'"}'
    return StoredEvent(i, "a", None, "progress", "x", None, 1000, None, payload)


def test_a_queue_is_bounded_by_bytes_too() -> None:
    """A console that stopped reading held 10,000 events whatever their size: 4 GB of 400 KB
    tool results. Past `subscriber_bytes` its oldest are dropped, and it is told how many."""
    bus = LiveBus(subscriber_capacity=1_000, subscriber_bytes=1_000_000)
    sub = bus.subscribe()
    sub.active = True
    for i in range(1, 51):
        bus.publish([big(i, 100_000)])
    assert sub.pending_bytes == sum(len(item) for _, item in sub.pending) <= 1_000_000
    events, _, dropped = sub.take()
    assert [c for c, _ in events] == list(range(51 - len(events), 51))
    assert dropped == 50 - len(events) and len(events) == 9
    assert sub.pending_bytes == 0


def test_an_event_larger_than_the_byte_bound_still_goes_out() -> None:
    bus = LiveBus(subscriber_bytes=1_000)
    sub = bus.subscribe()
    sub.active = True
    sub.filter = StreamFilter(agent_ids=frozenset({"a"}))  # the filtered path measures too
    bus.publish([big(1, 5_000), big(2, 5_000)])
    events, _, dropped = sub.take()
    assert [c for c, _ in events] == [2] and dropped == 1


def test_tail_keeps_committed_events_up_to_its_byte_size(monkeypatch: MonkeyPatch) -> None:
    """1,000 events of 400 KB kept 400 MB resident with nobody watching."""
    monkeypatch.setattr(bus_module, "RECENT_KEEP_BYTES", 250_000)
    bus = LiveBus()
    bus.publish([big(i, 100_000) for i in range(1, 6)])
    bus.publish([big(i, 100_000) for i in range(6, 9)])
    bus.committed(0)
    assert [e.id for e in bus.recent_after(0) or []] == list(range(1, 9))  # none committed
    bus.committed(4)
    assert [e.id for e in bus.recent_after(4) or []] == [5, 6, 7, 8]
    assert bus.recent_after(3) is None
    bus.committed(8)  # the newest two fit in 250,000 bytes; the tail lets go of 6
    assert [e.id for e in bus.recent_after(6) or []] == [7, 8]
    assert bus.recent_after(5) is None


def test_a_replay_past_the_dropped_events_cancels_the_drop_notice() -> None:
    """Events that overflowed the queue during a replay were sent by the replay: only a drop
    the replay did not cover is reported."""
    bus = LiveBus(subscriber_capacity=3)
    sub = bus.subscribe()
    sub.active = True
    bus.publish([stored(i) for i in range(1, 11)])
    sub.raise_floor(6)
    assert sub.dropped == 7
    sub.raise_floor(7)
    events, _, dropped = sub.take()
    assert [c for c, _ in events] == [8, 9, 10]
    assert dropped == 0


def test_floor_hides_what_was_already_sent() -> None:
    bus = LiveBus()
    sub = bus.subscribe()
    sub.active = True
    bus.publish([stored(1), stored(2)])
    sub.raise_floor(2)
    bus.publish([stored(2), stored(3)])
    assert [c for c, _ in sub.pending] == [3]


def test_agent_changes_reach_batch_subscribers_only_and_coalesce() -> None:
    bus = LiveBus()
    legacy, console = bus.subscribe(), bus.subscribe()
    legacy.active = console.active = console.batch = True
    bus.changed("agent", {"id": "a", "state": "working"})
    bus.changed("agent", {"id": "a", "state": "idle"})
    _, updates, _ = console.take()
    assert {key: orjson.loads(frame) for key, frame in updates.items()} == {
        ("agent", "a"): {"type": "agent", "payload": {"id": "a", "state": "idle"}}
    }
    assert legacy.take()[1] == {}


def test_a_console_following_some_agents_hears_of_those_agents_only() -> None:
    bus = LiveBus()
    narrow, wide = bus.subscribe(), bus.subscribe()
    narrow.active = narrow.batch = wide.active = wide.batch = True
    narrow.filter = StreamFilter(agent_ids=frozenset({"a"}))
    bus.changed("agent", {"id": "a"})
    bus.changed("agent", {"id": "b"})
    bus.changed("request", {"id": "r1", "agent_id": "b"})
    bus.changed("request", {"id": "r2", "agent_id": "a"})
    assert set(narrow.take()[1]) == {("agent", "a"), ("request", "r2")}
    assert len(wide.take()[1]) == 4


def test_a_changed_view_is_serialized_once_for_every_console() -> None:
    bus = LiveBus()
    first, second = bus.subscribe(), bus.subscribe()
    first.active = first.batch = second.active = second.batch = True
    bus.changed("request", {"id": "r1", "status": "pending"})
    assert first.take()[1][("request", "r1")] is second.take()[1][("request", "r1")]


def test_tail_serves_replays_until_the_store_has_the_events(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(bus_module, "RECENT_KEEP", 2)
    bus = LiveBus()
    bus.publish([stored(i) for i in range(1, 6)])  # live, none committed yet
    assert [e.id for e in bus.recent_after(0) or []] == [1, 2, 3, 4, 5]
    bus.committed(4)  # 1-4 are in the store now; the tail keeps the last RECENT_KEEP
    assert [e.id for e in bus.recent_after(3) or []] == [4, 5]
    assert bus.recent_after(2) is None  # 3 left the tail: read the store again
    assert bus.recent_after(5) == []


def test_tail_keeps_what_is_not_committed_beyond_its_size(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(bus_module, "RECENT_KEEP", 2)
    bus = LiveBus()
    bus.publish([stored(i) for i in range(1, 9)])
    bus.committed(0)
    assert [e.id for e in bus.recent_after(0) or []] == list(range(1, 9))
    bus.committed(3)  # 6 over its size, only 3 of them committed
    assert [e.id for e in bus.recent_after(3) or []] == [4, 5, 6, 7, 8]
    assert bus.recent_after(2) is None
    bus.publish([stored(9)])
    bus.committed(9)
    assert [e.id for e in bus.recent_after(7) or []] == [8, 9]
    assert bus.recent_after(6) is None


def test_unfiltered_subscribers_share_one_frame() -> None:
    bus = LiveBus()
    one, two, picky = bus.subscribe(), bus.subscribe(), bus.subscribe()
    for sub in (one, two, picky):
        sub.active = sub.batch = True
    picky.filter = StreamFilter(agent_ids=frozenset({"a"}))
    bus.publish([stored(1), stored(2, "b"), stored(3)])
    frames = [bus.events_frame(s.take()[0], shared=s.filter.everything) for s in (one, two)]
    assert frames[0] is frames[1]
    assert [e["cursor"] for e in orjson.loads(frames[0])["payload"]] == [1, 2, 3]
    own = bus.events_frame(picky.take()[0], shared=False)
    assert [e["cursor"] for e in orjson.loads(own)["payload"]] == [1, 3]
    bus.publish([stored(4, "a")])  # the first item is the last: head and tail on one item
    alone = bus.events_frame(picky.take()[0], shared=False)
    assert [e["cursor"] for e in orjson.loads(alone)["payload"]] == [4]


def test_event_items_are_the_json_of_the_items() -> None:
    events = [
        StoredEvent(
            1, 'a"\\b', None, "monitor", "x\n", "warn", 1_000, None, b'{"k":[1,"\\u00e9"]}'
        ),
        StoredEvent(2, "ü🙂", "s</script>", "progress", "t", None, 86_400_123, 5, b"{}"),
        StoredEvent(3, "ü🙂", "s</script>", "progress", "t", None, 86_400_123, 86_400_999, b"{}"),
        StoredEvent(4, "ü🙂", "s</script>", "progress", "t", None, 1_000, None, b"[]"),
        # The same time, one key changed at a time: each starts a new run.
        StoredEvent(5, "ü🙂", None, "progress", "t", None, 1_000, None, b"5"),
        StoredEvent(6, "ü🙂", None, "monitor", "t", None, 1_000, 7, b"6"),
        StoredEvent(7, "ü🙂", None, "monitor", "u", None, 1_000, None, b"7"),
        StoredEvent(8, "a", None, "monitor", "u", None, 1_000, None, b"8"),
    ]
    expected = [
        {
            "cursor": event.id,
            "timestamp": iso_ms(event.ts),
            "agent_id": event.agent_id,
            "session_id": event.session_id,
            "channel": event.channel,
            "type": event.event_type,
            "event_type": event.event_type,
            "client_timestamp": iso_ms(event.client_ts),
            "data": orjson.loads(event.payload),
        }
        for event in events
    ]
    # One call, whose receive times repeat and change back, and each event alone.
    assert [orjson.loads(item) for item in event_items(events, data_key="data")] == expected
    for event, item in zip(events, expected, strict=True):
        assert orjson.loads(event_item(event, data_key="data")) == item
    assert orjson.loads(event_item(events[0]))["event"] == {"k": [1, "é"]}


def test_the_tail_holds_the_published_events_without_a_copy() -> None:
    """Nothing is allocated per event to keep the tail: a replay gets the very objects."""
    bus = LiveBus()
    events = [stored(i) for i in range(1, 4)]
    bus.publish(events)
    replayed = bus.recent_after(0) or []
    assert len(replayed) == 3 and all(a is b for a, b in zip(replayed, events, strict=True))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=12),
    st.integers(1, 8),
)
def test_the_tail_keeps_what_the_store_may_lack_and_replays_it_exactly(
    steps: list[tuple[int, int]], keep: int
) -> None:
    """Runs of any size published, commits at any point: the tail gives up only committed
    events beyond its size, oldest first, and a replay from any cursor it still covers gets
    exactly the events past it."""
    bus = bus_module.LiveBus()
    published: list[int] = []
    kept: list[int] = []  # what the tail must hold, one event at a time as a reference
    through = 0
    original, bus_module.RECENT_KEEP = bus_module.RECENT_KEEP, keep
    try:
        for run, commit in steps:
            ids = list(range(len(published) + 1, len(published) + run + 1))
            bus.publish([stored(i) for i in ids])
            published += ids
            kept += ids
            through = min(len(published), through + commit)
            bus.committed(through)
            excess = len(kept) - keep
            while excess > 0 and kept[0] <= through:
                kept.pop(0)
                excess -= 1
            for cursor in range(len(published) + 1):
                replay = bus.recent_after(cursor)
                if kept and cursor < kept[0] - 1:
                    assert replay is None, cursor
                else:
                    assert [e.id for e in replay or []] == [i for i in published if i > cursor]
            assert [e.payload for e in bus.recent_after(max(0, (kept or [1])[0] - 1)) or []] == [
                stored(i).payload for i in kept
            ]
    finally:
        bus_module.RECENT_KEEP = original


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(10, 60), max_size=6), st.integers(0, 5)),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 8),
    st.integers(10, 200),
)
def test_the_tail_keeps_what_fits_its_count_and_bytes_and_replays_it_exactly(
    steps: list[tuple[list[int], int]], keep: int, keep_bytes: int
) -> None:
    """Events of any size: the tail gives up committed events, oldest first, while it holds
    more than `RECENT_KEEP` events or `RECENT_KEEP_BYTES` of payloads, and no others."""
    original = bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES
    bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES = keep, keep_bytes
    try:
        bus = bus_module.LiveBus()
        published: list[int] = []
        kept: list[tuple[int, int]] = []  # (id, payload bytes) the tail must hold
        through = 0
        for run, commit in steps:
            events = [big(len(published) + n, size) for n, size in enumerate(run, 1)]
            bus.publish(events)
            published += [e.id for e in events]
            kept += [(e.id, len(e.payload)) for e in events]
            through = min(len(published), through + commit)
            bus.committed(through)
            while (
                kept
                and kept[0][0] <= through
                and (len(kept) > keep or sum(s for _, s in kept) > keep_bytes)
            ):
                kept.pop(0)
            oldest = kept[0][0] if kept else len(published) + 1
            assert bus.recent_after(oldest - 2) is None or oldest == 1
            assert [e.id for e in bus.recent_after(oldest - 1) or []] == [i for i, _ in kept]
            assert bus._recent_bytes == sum(s for _, s in kept)
    finally:
        bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES = original


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(10, 400), max_size=6), st.integers(0, 5)),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 8),
    st.integers(10, 1_000),
)
def test_a_watched_tail_measured_by_items_keeps_its_bounds(
    steps: list[tuple[list[int], int]], keep: int, keep_bytes: int
) -> None:
    """With an unfiltered subscriber a run is measured by its items (the payloads and a little
    more), a part of one by its payloads: the tail still holds every event not committed, a
    contiguous run of the newest, within its bounds."""
    original = bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES
    bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES = keep, keep_bytes
    try:
        bus = bus_module.LiveBus()
        sub = bus.subscribe()
        sub.active = True
        published: list[StoredEvent] = []
        through = 0
        for run, commit in steps:
            events = [big(len(published) + n, size) for n, size in enumerate(run, 1)]
            bus.publish(events)
            sub.take()
            published += events
            through = min(len(published), through + commit)
            bus.committed(through)
            kept = bus.recent_after(bus.trimmed_through) or []
            assert [e.id for e in kept] == [e.id for e in published[bus.trimmed_through :]]
            assert bus.trimmed_through <= through
            committed = [e for e in kept if e.id <= through]
            assert not committed or (
                len(kept) <= keep and sum(len(e.payload) for e in kept) <= keep_bytes
            )
            assert bus._recent_bytes >= 0
    finally:
        bus_module.RECENT_KEEP, bus_module.RECENT_KEEP_BYTES = original


async def test_a_turns_offers_go_out_in_one_flush_per_subscriber() -> None:
    """With `flush` set, offers wake no task: each subscriber's flush runs once, after every
    publication of that turn of the loop, and sees all of them."""
    bus = LiveBus()
    seen: dict[str, list[list[int]]] = {"one": [], "two": []}
    subs = {name: bus.subscribe() for name in seen}
    for name, sub in subs.items():
        sub.active = sub.batch = True

        def flush(sub: Subscriber = sub, name: str = name) -> int:
            seen[name].append([cursor for cursor, _ in sub.pending])
            sub.sent()
            return len(seen[name][-1])

        sub.flush = flush
    bus.publish([stored(1), stored(2)])
    bus.publish([stored(3)])
    bus.changed("agent", {"id": "a"})
    assert seen == {"one": [], "two": []}  # nothing is sent before the turn ends
    await asyncio.sleep(0)
    assert seen == {"one": [[1, 2, 3]], "two": [[1, 2, 3]]}
    assert not any(sub.wake.is_set() or sub.pending or sub.updates for sub in subs.values())
    await asyncio.sleep(0.01)
    assert seen == {"one": [[1, 2, 3]], "two": [[1, 2, 3]]}  # and nothing more


async def test_a_flush_that_cannot_send_wakes_the_task_and_keeps_the_events() -> None:
    bus = LiveBus()
    sub = bus.subscribe()
    sub.active = sub.batch = True
    sub.flush = lambda: -1  # replaying, say: the connection's task sends it later
    bus.publish([stored(1)])
    assert not sub.wake.is_set()
    await asyncio.sleep(0)
    assert sub.wake.is_set()
    assert [cursor for cursor, _ in sub.take()[0]] == [1]


async def test_after_a_busy_flush_the_next_waits_for_the_send_interval() -> None:
    """A flush that sent BUSY_SEND events or more holds the next one until SEND_INTERVAL_S
    after it, so that it carries that time's events; after a quiet one, the next is at once."""
    bus = LiveBus()
    sub = bus.subscribe()
    sub.active = sub.batch = True
    flushes: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()

    def flush() -> int:
        flushes.append((loop.time(), len(sub.pending)))
        sub.sent()
        return flushes[-1][1]

    sub.flush = flush
    bus.publish([stored(i) for i in range(1, BUSY_SEND + 1)])
    await asyncio.sleep(0)
    assert len(flushes) == 1
    bus.publish([stored(BUSY_SEND + 1)])
    await asyncio.sleep(0)
    assert len(flushes) == 1  # held back
    deadline = loop.time() + 1.0
    while len(flushes) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.0002)
    assert len(flushes) == 2 and flushes[1][1] == 1
    assert flushes[1][0] - flushes[0][0] >= SEND_INTERVAL_S * 0.99
    bus.publish([stored(i) for i in range(BUSY_SEND + 2, 2 * BUSY_SEND + 2)])
    await asyncio.sleep(0)
    assert len(flushes) == 3  # the last flush was quiet: no wait
    deadline = loop.time() + 1.0
    while len(flushes) < 4 and loop.time() < deadline:  # busy again: a view waits too,
        bus.changed("agent", {"id": "a"})  # and a flush of views only does not end it
        await asyncio.sleep(0.0002)
    bus.publish([stored(2 * BUSY_SEND + 2)])
    await asyncio.sleep(0)
    assert len(flushes) == 4
    assert flushes[3][0] - flushes[2][0] >= SEND_INTERVAL_S * 0.99


async def test_a_flush_that_fails_leaves_the_others_sent_and_its_events_to_the_task() -> None:
    bus = LiveBus()
    broken, fine = bus.subscribe(), bus.subscribe()
    broken.active = fine.active = True

    def fail() -> int:
        raise OSError("gone")

    def send() -> int:
        fine.sent()
        return 1

    broken.flush, fine.flush = fail, send
    bus.publish([stored(1)])
    await asyncio.sleep(0)
    assert not fine.pending and not fine.wake.is_set()
    assert broken.wake.is_set() and [c for c, _ in broken.pending] == [1]


async def test_a_stream_flush_sends_events_and_views_in_one_write_or_leaves_them() -> None:
    """`StreamFlush`: one `events` frame, then the views' frames, in one call of `send`; when
    the task is sending, a notice is due, events were dropped, the subscriber is not in batch
    mode or `send` refuses, nothing is taken and the task is woken to send it."""
    bus = LiveBus()
    sub = bus.subscribe()
    sub.active = sub.batch = True
    writes: list[list[bytes]] = []
    state = {"busy": False, "open": True}

    def send(frames: list[bytes]) -> bool:
        if not state["open"]:
            return False
        writes.append(frames)
        return True

    sub.flush = StreamFlush(bus, sub, send, lambda: state["busy"])
    bus.publish([stored(1), stored(2)])
    bus.changed("agent", {"id": "a"})
    await asyncio.sleep(0)
    assert len(writes) == 1 and not sub.pending and not sub.updates and not sub.wake.is_set()
    events, view = writes[0]
    assert [e["cursor"] for e in orjson.loads(events)["payload"]] == [1, 2]
    assert orjson.loads(view) == {"type": "agent", "payload": {"id": "a"}}

    for blocked in ("busy", "notice", "dropped", "not batch", "closed"):
        state["busy"] = blocked == "busy"
        sub.notice_due = blocked == "notice"
        sub.dropped = int(blocked == "dropped")
        sub.batch = blocked != "not batch"
        state["open"] = blocked != "closed"
        bus.publish([stored(10)])
        await asyncio.sleep(0)
        assert len(writes) == 1, blocked
        assert sub.wake.is_set() and [c for c, _ in sub.pending] == [10], blocked
        sub.take()
    state["busy"], sub.notice_due, sub.batch, state["open"] = False, False, True, True
    bus.publish([stored(11)])
    await asyncio.sleep(0)
    assert len(writes) == 2 and [e["cursor"] for e in orjson.loads(writes[1][0])["payload"]] == [11]


def test_replay_pages_grow_while_small_and_shrink_to_their_byte_budget() -> None:
    from aster_studio.api.stream import (
        REPLAY_FIRST_PAGE,
        REPLAY_PAGE,
        REPLAY_PAGE_BYTES,
        next_page_size,
    )

    size = REPLAY_FIRST_PAGE
    for _ in range(10):  # small events: up to the most a page takes
        size = next_page_size(size, size * 200)
    assert size == REPLAY_PAGE
    for event_bytes in (800_000, 1 << 20, 5 << 20):  # big ones: a page within its budget
        size = next_page_size(REPLAY_PAGE, REPLAY_PAGE * event_bytes)
        assert size >= 1 and (size == 1 or size * event_bytes <= REPLAY_PAGE_BYTES)
