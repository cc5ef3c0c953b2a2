"""Fan committed events out to live subscribers, coalesced and bounded per subscriber."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import operator
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..models import StoredEvent, counts_as_error, iso_ms

log = logging.getLogger(__name__)

LEVELS = {"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3, "fatal": 4}
# What `min_level` compares: a severity not named here (`critical`) is an error, as in every
# error count; `notice` is below `warn`.
_SEVERITY_LEVELS: Final = {**LEVELS, "notice": 1}
_INFO: Final = 1
_ERROR: Final = 3


def severity_level(event: StoredEvent) -> int:
    """The level `min_level` compares: the event's severity's, else `info`, or `error` for an
    `error` event (which every error count counts), so that `min_level: "warn"` passes what
    the counts call errors and leaves out the text and tool events, which carry none."""
    severity = event.severity
    if severity is None:
        return _ERROR if counts_as_error(event.event_type, None) else _INFO
    return _SEVERITY_LEVELS.get(severity.lower(), _ERROR)


# What waits for the subscribers goes out once per turn of the event loop, after every read of
# that turn, in one frame each. After a turn that sent many events (the Studio is busy) the next
# send waits until SEND_INTERVAL_S has passed, so each carries a millisecond's events: a send
# costs a syscall and the peer's TCP work, more than everything else the server does for an
# event (docs/benchmarks.md). A quieter stream is not held back: the loop's timers round to
# whole milliseconds, and a wait of a fraction of one became 1.1 ms added to most events'
# latency at 10,000 events/s.
SEND_INTERVAL_S = 0.001
BUSY_SEND = 64


# The JSON of an item's fields that repeat from event to event (agent, session, channel, type),
# by their values: most events come in runs from the same session.
_KEYS_JSON: Final[dict[tuple[str, str | None, str, str], bytes]] = {}
_KEYS_JSON_MAX = 4096
_last_time: tuple[int, bytes] = (-1, b"")  # replaced whole: safe across threads


def _time_json(ms: int | None) -> bytes:
    global _last_time
    if ms is None:  # most events carry no client time: keep the cache for the receive time
        return b"null"
    last = _last_time
    if last[0] == ms:
        return last[1]
    value = b'"%b"' % (iso_ms(ms) or "").encode()
    _last_time = (ms, value)
    return value


def stream_frame(kind: str, payload: Any, **extra: Any) -> bytes:
    """A live-stream frame: `{"type": kind, "payload": payload, ...extra}`."""
    return orjson.dumps({"type": kind, "payload": payload, **extra})


def _keys_json(key: tuple[str, str | None, str, str]) -> bytes:
    """The item's `agent_id` ... `event_type` members for `key`, cached."""
    if len(_KEYS_JSON) >= _KEYS_JSON_MAX:
        _KEYS_JSON.clear()
    agent_id, session_id, channel, event_type = key
    value = _KEYS_JSON[key] = orjson.dumps(
        {
            "agent_id": agent_id,
            "session_id": session_id,
            "channel": channel,
            "type": event_type,
            "event_type": event_type,
        }
    )[1:-1]
    return value


def event_items(events: Iterable[StoredEvent], *, data_key: str = "event") -> list[bytes]:
    """Serialize events as the API's items, splicing in the stored payloads unparsed.

    The same JSON as `orjson.dumps` of each item dict, built from cached pieces at a third of
    the cost: this runs once per event for the live stream, so it is one loop over a run of
    events, with the fields taken by position (a StoredEvent is a tuple). The receive time and
    keys between an item's cursor and its client time are those of the event before in a run
    from one session received in one millisecond: that middle is built once a run.
    """
    payload = b',"' + data_key.encode() + b'":%b}'
    untimed = b'{"cursor":%d%b' + payload  # most events carry no client time
    timed = b'{"cursor":%d%b%b' + payload
    items: list[bytes] = []
    append = items.append
    agent = channel = etype = ""
    session: str | None = None
    ts = -1  # no event's: the first builds the middle
    middle = untimed_middle = b""
    for event in events:
        if (
            event[6] != ts
            or event[1] != agent
            or event[2] != session
            or event[4] != etype
            or event[3] != channel
        ):
            agent, session, channel, etype, ts = event[1], event[2], event[3], event[4], event[6]
            key = (agent, session, channel, etype)
            keys_json = _KEYS_JSON.get(key)
            if keys_json is None:
                keys_json = _keys_json(key)
            middle = b',"timestamp":%b,%b,"client_timestamp":' % (_time_json(ts), keys_json)
            untimed_middle = middle + b"null"
        client_ts = event[7]
        if client_ts is None:  # one `%b` fewer (each is a buffer export)
            append(untimed % (event[0], untimed_middle, event[8]))
        else:
            append(timed % (event[0], middle, _time_json(client_ts), event[8]))
    return items


def event_item(event: StoredEvent, *, data_key: str = "event") -> bytes:
    """One event as the API's item (see `event_items`)."""
    return event_items((event,), data_key=data_key)[0]


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """A subscriber's filter; empty sets match everything (as the original Studio did)."""

    channels: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    agent_ids: frozenset[str] = frozenset()
    session_ids: frozenset[str] = frozenset()
    min_level: int = 0

    @property
    def everything(self) -> bool:
        """True when nothing is filtered out (the console's usual subscription)."""
        return not (
            self.channels
            or self.event_types
            or self.agent_ids
            or self.session_ids
            or self.min_level
        )

    def matches(self, event: StoredEvent) -> bool:
        if self.channels and event.channel.lower() not in self.channels:
            return False
        if self.event_types and event.event_type.lower() not in self.event_types:
            return False
        if self.agent_ids and event.agent_id not in self.agent_ids:
            return False
        if self.session_ids and event.session_id not in self.session_ids:
            return False
        return not self.min_level or severity_level(event) >= self.min_level


# The most bytes of events (their items' JSON) that wait for one live-stream connection, as
# `capacity` is the most events: a console that stops reading loses its oldest first, and is
# told (`dropped`). Counting events alone let a stalled console hold 10,000 events of 400 KB
# each, 4 GB.
SUBSCRIBER_BYTES = 16 << 20


@dataclass(eq=False, slots=True)
class Subscriber:
    """One live-stream connection's queue: events and agent changes waiting to be sent."""

    id: int
    capacity: int
    max_bytes: int = SUBSCRIBER_BYTES
    filter: StreamFilter = field(default_factory=StreamFilter)
    batch: bool = False
    active: bool = False
    pending: deque[tuple[int, bytes]] = field(default_factory=deque)
    pending_bytes: int = 0  # the length of the items in `pending`
    updates: dict[tuple[str, str], bytes] = field(default_factory=dict)  # frames, by (kind, id)
    floor: int = 0  # events at or below this cursor were already sent (replay)
    dropped: int = 0
    dropped_through: int = 0  # the newest cursor dropped since the last notice
    received: int = 0
    filtered: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Sends what waits at once, on the loop (the stream sets it, usually to a `StreamFlush`):
    # the number of events sent, or -1 to leave it to the connection's task, woken by `wake`
    # (replaying, a notice due, the socket not writable). Without it, every offer wakes the task.
    flush: Callable[[], int] | None = None
    notice_due: bool = False  # the task has a notice to send first (the stream's stats)

    def raise_floor(self, cursor: int) -> None:
        """Never send events at or below `cursor` again, queued or future."""
        self.floor = max(self.floor, cursor)
        if self.dropped_through <= cursor:
            self.dropped = 0  # a replay sent those: nothing is missing
        kept = [(c, item) for c, item in self.pending if c > cursor]
        self.pending.clear()
        self.pending.extend(kept)
        self.pending_bytes = sum(len(item) for _, item in kept)

    def clear(self) -> None:
        """Forget the events waiting (a new subscription, or none)."""
        self.pending.clear()
        self.pending_bytes = 0

    def offer_many(self, chosen: list[tuple[int, bytes]], size: int) -> bool:
        """Queue a run's matching events at once, `size` bytes of items, the oldest dropped
        past capacity or `max_bytes`; False if none."""
        if not chosen:
            return False
        if chosen[0][0] <= self.floor:
            chosen = [c for c in chosen if c[0] > self.floor]
            size = sum(len(item) for _, item in chosen)
        self.pending.extend(chosen)
        self.pending_bytes += size
        if len(self.pending) > self.capacity or self.pending_bytes > self.max_bytes:
            self._drop_oldest()
        return True

    def _drop_oldest(self) -> None:
        """Drop the oldest events until both bounds hold; the newest stays, however large."""
        pending = self.pending
        size = self.pending_bytes
        excess = len(pending) - self.capacity
        dropped = 0
        while dropped < excess or (size > self.max_bytes and len(pending) > 1):
            cursor, item = pending.popleft()
            size -= len(item)
            dropped += 1
            self.dropped_through = cursor
        self.pending_bytes = size
        self.dropped += dropped

    def take(self) -> tuple[list[tuple[int, bytes]], dict[tuple[str, str], bytes], int]:
        """Return and clear what is waiting: events, changed views' frames by (kind, id), and
        the drop count."""
        events = list(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        updates, self.updates = self.updates, {}
        dropped, self.dropped = self.dropped, 0
        self.wake.clear()
        return events, updates, dropped

    def sent(self) -> None:
        """What `flush` read from `pending` and `updates` went out: forget it."""
        self.pending.clear()
        self.pending_bytes = 0
        self.updates.clear()
        self.wake.clear()


class StreamFlush:
    """A batch-mode subscriber's `flush`: its events in one `events` frame and the changed views'
    frames, all in one write. Left to the connection's task (-1) while that task is sending,
    has a notice due or drops to tell of, or the subscriber is not in batch mode.

    Compiled: at 10,000 events/s five consoles take about 10,000 of these a second, and the
    same steps in the stream's Python took a third longer (docs/benchmarks.md). `send` writes
    the frames at once, or returns False (the socket is closing or its buffer full) and sends
    nothing.
    """

    def __init__(
        self,
        bus: LiveBus,
        sub: Subscriber,
        send: Callable[[list[bytes]], bool],
        busy: Callable[[], bool],
    ) -> None:
        self.bus = bus
        self.sub = sub
        self.send = send
        self.busy = busy  # the connection's task is sending: it takes what waits

    def __call__(self) -> int:
        sub = self.sub
        if not sub.batch or sub.notice_due or sub.dropped or self.busy():
            return -1
        events = list(sub.pending)
        frames = [self.bus.events_frame(events, shared=sub.filter.everything)] if events else []
        frames.extend(sub.updates.values())
        if frames and not self.send(frames):
            return -1
        sub.sent()
        return len(events)


# Committed events kept in the tail beyond the uncommitted ones, so a replay that has just read
# the store usually finds the events committed while it read there (else it reads again). Each
# timed collection walks the tail's fields (heap.py): at 10,000 events/s, 5,000 of them cost
# pauses of 1.2-2.9 ms, 1,000 about 0.1 ms (docs/benchmarks.md).
RECENT_KEEP = 1_000
# And about this many bytes of committed events' payloads (a run published to an unfiltered
# subscriber is measured by its items, a little more): 1,000 events of 400 KB held 400 MB.
RECENT_KEEP_BYTES = 8 << 20
_ID: Final = operator.itemgetter(0)  # a StoredEvent's id
_PAYLOAD: Final = operator.itemgetter(8)  # a StoredEvent's payload


def _payload_bytes(events: list[StoredEvent]) -> int:
    return sum(map(len, map(_PAYLOAD, events)))


class LiveBus:
    """Hold the subscribers; `publish` is called on the event loop as events are received.

    Events go live before they are committed (the write queue is a few ms behind), so the bus
    keeps the tail that the store may not show yet: every event not yet committed, and the
    last `RECENT_KEEP` that are, or fewer when their payloads pass `RECENT_KEEP_BYTES`. A
    replay reads the store, then this tail.
    """

    def __init__(
        self, subscriber_capacity: int = 10_000, subscriber_bytes: int = SUBSCRIBER_BYTES
    ) -> None:
        self._capacity = subscriber_capacity
        self._subscriber_bytes = subscriber_bytes
        self._subscribers: dict[int, Subscriber] = {}
        self._ids = itertools.count(1)
        self.published = 0
        # Each published run of events, in id order, is held as the list it was published in:
        # nothing is copied or allocated per event. Flattening each run's fields into one
        # tuple, which the collector stops walking, took 4% of the samples in saturated
        # batches; the named tuples held instead are at most RECENT_KEEP more than the write
        # queue holds anyway, and `bench_gc` timed no longer collections (docs/benchmarks.md).
        self._recent: deque[list[StoredEvent]] = deque()
        self._recent_sizes: deque[int] = deque()  # each run's payload bytes
        self._recent_events = 0
        self._recent_bytes = 0
        self._trimmed_through = 0  # the tail holds every published event past this id
        # The last `events` frame built for an unfiltered subscriber, by the identity of its
        # first and last items and its length; the others taking the same run reuse it.
        self._shared_frame: tuple[bytes, bytes, int, bytes] | None = None
        # Subscribers with something to send, by id, and the loop's call that sends it.
        self._due: dict[int, Subscriber] = {}
        self._flushing: asyncio.Handle | None = None
        self._flushed_at = 0.0
        self._busy = False  # the last flush sent BUSY_SEND events or more to a subscriber

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        sub = Subscriber(next(self._ids), self._capacity, self._subscriber_bytes)
        self._subscribers[sub.id] = sub
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.pop(sub.id, None)

    def committed(self, through: int) -> None:
        """Events up to `through` are in the store: the tail may let go of the older ones."""
        excess = self._recent_events - RECENT_KEEP
        excess_bytes = self._recent_bytes - RECENT_KEEP_BYTES
        recent = self._recent
        sizes = self._recent_sizes
        while (excess > 0 or excess_bytes > 0) and recent:
            run = recent[0]
            if run[0].id > through:  # its oldest event is not committed yet: keep everything
                return
            count = len(run)
            size = sizes[0]
            if excess_bytes >= size:
                drop = count
            else:
                drop = min(count, max(excess, 0))
                if excess_bytes > 0:  # as many of the oldest as hold that many bytes
                    held = _payload_bytes(run[:drop])
                    while held < excess_bytes and drop < count:  # `size` may count items
                        held += len(run[drop][8])
                        drop += 1
            if run[drop - 1].id > through:  # only the committed ones may go
                drop = bisect.bisect_right(run, through, hi=drop, key=_ID)
            if drop == count:
                recent.popleft()
                sizes.popleft()
                gone = size
            else:
                # Measure the smaller part: this runs at most once a commit, on one run.
                if drop <= count // 2:
                    gone = _payload_bytes(run[:drop])
                else:
                    gone = size - _payload_bytes(run[drop:])
                recent[0] = run[drop:]
                sizes[0] = size - gone
            self._trimmed_through = run[drop - 1].id
            self._recent_events -= drop
            self._recent_bytes -= gone
            excess -= drop
            excess_bytes -= gone
            if drop < count:
                return

    @property
    def trimmed_through(self) -> int:
        """The newest event the tail let go of: every event up to it is committed."""
        return self._trimmed_through

    def recent_after(self, cursor: int) -> list[StoredEvent] | None:
        """Published events past `cursor`; None when the tail no longer reaches back to it
        (read the store again: what is missing from the tail is committed)."""
        if self._trimmed_through > cursor:
            return None
        runs: list[list[StoredEvent]] = []
        for run in reversed(self._recent):
            if run[-1].id <= cursor:  # its newest event: nothing here or before is wanted
                break
            runs.append(run)
        events: list[StoredEvent] = []
        runs.reverse()  # not `in reversed(runs)`: mypyc fails to compile that loop
        for run in runs:
            if run[0].id <= cursor:
                run = run[bisect.bisect_right(run, cursor, key=_ID) :]
            events += run
        return events

    def publish(self, events: list[StoredEvent]) -> None:
        """Offer each event to every matching subscriber, serializing it at most once.

        The bus keeps `events` in its tail: the caller hands the list over.
        """
        self.published += len(events)
        subs = [s for s in self._subscribers.values() if s.active]
        # Each event is serialized at most once: all of them at once for an unfiltered
        # subscriber (which then takes the whole list), otherwise as a filter first wants it.
        everything: list[tuple[int, bytes]] | None = None
        everything_bytes = 0
        if subs and any(sub.filter.everything for sub in subs):
            items = event_items(events, data_key="data")
            everything = list(zip(map(_ID, events), items, strict=True))
            everything_bytes = sum(map(len, items))
        if events:
            self._recent.append(events)
            # The items hold the payloads and a little more: measured once, not twice.
            size = everything_bytes if everything is not None else _payload_bytes(events)
            self._recent_sizes.append(size)
            self._recent_events += len(events)
            self._recent_bytes += size
        if not subs:
            return
        serialized: dict[int, tuple[int, bytes]] | None = None  # by index, for filtered ones
        for sub in subs:
            if everything is not None and sub.filter.everything:
                sub.received += len(events)
                if sub.offer_many(everything, everything_bytes):
                    self._notify(sub)
                continue
            if serialized is None:
                serialized = dict(enumerate(everything or ()))
            matches = sub.filter.matches
            wanted = [index for index, event in enumerate(events) if matches(event)]
            missing = [index for index in wanted if index not in serialized]
            if missing:
                items = event_items([events[i] for i in missing], data_key="data")
                for index, item in zip(missing, items, strict=True):
                    serialized[index] = (events[index].id, item)
            chosen = [serialized[index] for index in wanted]
            sub.received += len(events)
            sub.filtered += len(events) - len(chosen)
            if sub.offer_many(chosen, sum(len(item) for _, item in chosen)):
                self._notify(sub)

    def _notify(self, sub: Subscriber) -> None:
        """`sub` has something to send: flush it with the others at the end of this turn."""
        if sub.flush is None:
            sub.wake.set()
            return
        self._due[sub.id] = sub
        if self._flushing is None:
            loop = asyncio.get_running_loop()
            wait = self._flushed_at + SEND_INTERVAL_S - loop.time() if self._busy else 0.0
            if wait > 0:
                self._flushing = loop.call_later(wait, self._flush)  # more joins this send
            else:
                self._flushing = loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send to every subscriber that has something waiting, each in one write."""
        self._flushing = None
        due, self._due = self._due, {}
        busy: bool | None = None  # unknown after a flush of views only, or none sent here
        for sub in due.values():
            flush = sub.flush
            try:
                sent = flush() if flush is not None else -1
            except Exception:  # one broken connection must not keep the others waiting
                log.exception("sending to live subscriber %d failed", sub.id)
                sent = -1
            if sent < 0:
                sub.wake.set()
            elif sent >= BUSY_SEND:
                busy = True
            elif sent > 0 and busy is None:
                busy = False
        if busy is not None:
            self._busy = busy
        self._flushed_at = asyncio.get_running_loop().time()

    def events_frame(self, events: list[tuple[int, bytes]], *, shared: bool) -> bytes:
        """The batch-mode `events` frame for `events`, built once for all unfiltered subscribers.

        An unfiltered subscriber's queue is a contiguous run of what was published (trimmed
        only at its start), so the same first item, last item and length mean the same run.
        """
        first, last, count = events[0][1], events[-1][1], len(events)
        cached = self._shared_frame
        if (
            shared
            and cached is not None
            and cached[0] is first
            and cached[1] is last
            and cached[2] == count
        ):
            return cached[3]
        # One join: the frame's head and tail go onto its first and last items, not onto the
        # joined items, which concatenation would copy twice more (a saturated server's frames
        # hold thousands of events; docs/benchmarks.md has the cost).
        items = [e[1] for e in events]
        items[0] = b'{"type":"events","payload":[' + items[0]
        items[-1] += b"]}"
        frame = b",".join(items)
        if shared:
            self._shared_frame = (first, last, count, frame)
        return frame

    def changed(self, kind: str, view: dict[str, Any]) -> None:
        """Tell batch-mode subscribers (our console) that a view (`agent`, `request`) changed.

        The view's frame is serialized here, once for all of them: a busy Studio's agents all
        change at each view interval, and every console gets each of them.
        """
        frame: bytes | None = None
        agent_id = view["id"] if kind == "agent" else view.get("agent_id")
        for sub in self._subscribers.values():
            if sub.active and sub.batch:
                agents = sub.filter.agent_ids
                if agents and agent_id not in agents:
                    continue  # a console that follows some agents hears of those only
                if frame is None:
                    frame = stream_frame(kind, view)
                sub.updates[(kind, view["id"])] = frame
                self._notify(sub)
