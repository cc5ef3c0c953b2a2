"""Apply decoded agent messages: update live state, queue writes, reply, and ack when durable."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

from aster_studio_sdk.protocol import (
    Batch,
    ClientMessage,
    CloseCode,
    EndSession,
    ErrorCode,
    Event,
    Limits,
    MessageType,
    Ping,
    ProtocolError,
    Register,
    RegisterSession,
    Unregister,
    binary_frame_error,
    decode,
    decode_pair,
    dumps_wide,
    error_payload,
)

from .. import store as ops
from ..auth import Auth
from ..live.bus import LiveBus
from ..models import StoredEvent, Usage, UsageTotals, counts_as_error
from ..store import CommitResult, Store, WriteOp
from .connection import AgentConnection, ConnectionLimits
from .pipeline import WritePipeline
from .registry import LiveAgent, Producer, Registry

log = logging.getLogger(__name__)

_new_tuple: Final = tuple.__new__
# What every event reads, as Final names ("Compiled modules" in docs/architecture.md).
_STORED_EVENT: Final = StoredEvent
_dumps: Final = orjson.dumps

Clock = Callable[[], int]  # epoch milliseconds
_time_ns: Final = time.time_ns


def wall_clock_ms() -> int:
    """The server's clock, in epoch milliseconds. Defined here to be compiled: read once a
    frame, an interpreted function cost 1,270 instructions a call (callgrind)."""
    return _time_ns() // 1_000_000


# Agent views (status, state, usage) reach the console at most this often: a busy agent changes
# with every commit, and one view per commit per subscriber cost more frames than the events.
VIEW_INTERVAL_S = 0.2
# The agents are dealt round-robin into this many slots, whose views go out at different ticks
# of a VIEW_INTERVAL_S / VIEW_SLOTS grid: fifty busy agents' views built and sent at once held
# the loop long enough that a quarter to two thirds of the events over 2 ms at 10,000 ev/s came
# in those moments (docs/benchmarks.md).
VIEW_SLOTS: Final = 10
# A batch of thousands of messages takes tens of ms to apply: let other connections in between.
YIELD_EVERY: Final = 256


@dataclass(slots=True)
class IngestStats:
    """Counters for /metrics."""

    connections_total: int = 0
    frames: int = 0
    messages: int = 0
    events: int = 0
    errors: int = 0
    duplicates: int = 0
    refused: int = 0  # messages refused by policy (key scope, agent/session caps)
    throttled_s: float = 0.0  # time connections were held back by their rate limit
    dropped_replies: int = 0  # replies to clients that never read, of connections closed
    bad_token_counts: int = 0  # token_usage fields that held no count, or one over MAX_TOKENS


class RateMeter:
    """Count events per wall-clock second over the last two minutes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: deque[list[int]] = deque(maxlen=120)

    def add(self, count: int) -> None:
        second = self._clock() // 1000
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])

    def per_second(self, window_s: int = 10) -> float:
        """Average over the last `window_s` whole seconds (the current one excluded)."""
        now = self._clock() // 1000
        total = sum(c for s, c in self._buckets if now - window_s <= s < now)
        return total / window_s


# Token counts past this in one report are taken as this: no model reads ten billion tokens
# at once, and sums of such counts must stay within the store's 64-bit integers.
MAX_TOKENS = 10_000_000_000

# Usage is filed at the agent's own time (an SDK resends what it held through an outage),
# unless that time is ahead of the server's (a window ending now would leave it out), or older
# than the longest period the metrics show: then at the receive time.
USAGE_MAX_AGE_MS = 30 * 86_400_000

_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)


def _count(value: Any) -> int | None:
    """Read a token count: None when it is not one (negative, not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = int(value)
    elif isinstance(value, str) and 0 < len(value) <= 32 and value.isascii():
        # Protobuf's JSON writes an int64 as a string; others write "1e3" or pad it.
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                parsed = float(text)
            except ValueError:
                return None
            if not math.isfinite(parsed):
                return None
            number = int(parsed)
    else:
        return None
    return number if number >= 0 else None


def read_usage(event: dict[str, Any], default_model: str | None) -> tuple[Usage, list[str]]:
    """Read token counts from a `token_usage` event, the agent's model when none is named;
    return them with the fields that held no count (counted as absent) or were capped.

    The fields mean what they mean at Anthropic, whose names they are: `input_tokens` are
    read fresh, the cache's `cache_read_input_tokens` and `cache_creation_input_tokens` come
    on top. Where `total_tokens` is `input_tokens + output_tokens`, as OpenAI counts (its
    prompt tokens hold the cached ones), the cache's tokens are taken out of `input_tokens`.
    `reasoning_tokens` are a part of `output_tokens`, as OpenAI counts, unless there are more
    of them than output tokens (then they came apart, as Gemini's thoughts do). A
    `total_tokens` above the parts adds the rest to the output (output not given, or
    reasoning reported apart); a total given alone is counted as input, unpriced: its split,
    which the price depends on, is unknown.
    """
    bad: list[str] = []
    counts: list[int | None] = []
    for name in _TOKEN_FIELDS:
        value = event.get(name)
        if value is None:
            counts.append(None)
            continue
        number = _count(value)
        if number is None:
            bad.append(name)
        elif number > MAX_TOKENS:
            bad.append(name)
            number = MAX_TOKENS
        counts.append(number)
    given_input, given_output, total, cache_read, cache_creation, reasoning = counts
    input_tokens = given_input or 0
    output_tokens = given_output or 0
    cached = (cache_read or 0) + (cache_creation or 0)
    priceable = True
    if total is not None:
        if not input_tokens and not output_tokens:
            input_tokens = max(total - cached, 0)
            priceable = not input_tokens
        elif cached and total == input_tokens + output_tokens and cached <= input_tokens:
            input_tokens -= cached
        elif total > input_tokens + output_tokens + cached:
            output_tokens = total - input_tokens - cached
    if reasoning and reasoning > output_tokens:
        output_tokens += reasoning
    model = event.get("model")
    usage = Usage(
        model=model if isinstance(model, str) and model else default_model,
        input=input_tokens,
        output=output_tokens,
        cache_read=cache_read or 0,
        cache_creation=cache_creation or 0,
        reasoning=reasoning or 0,
        priceable=priceable,
    )
    return usage, bad


def usage_of(event: dict[str, Any], default_model: str | None) -> Usage:
    """Read token counts from a `token_usage` event (`read_usage`, its problems aside)."""
    return read_usage(event, default_model)[0]


def _land(landing: dict[AgentConnection, int]) -> None:
    for conn, count in landing.items():
        conn.landed(count)


# The event types that change their agent's usage or state.
_EFFECTS: Final = frozenset({"token_usage", "state_changed", "done"})
# Each event type seen, as the effect it has ("" for none). Types match whatever their case
# (docs/api.md: `TOKEN_USAGE` counts); one lookup an event, cheaper than three comparisons, and
# a type is lowered only the first time it comes.
_KINDS: Final[dict[str, str]] = {kind: kind for kind in _EFFECTS}


def _kind_of(event_type: str) -> str:
    """Return the effect of events of this type ("" for none), and remember it."""
    lowered = event_type.lower()
    kind = lowered if lowered in _EFFECTS else ""
    if len(_KINDS) < 10_000:  # agents may send any number of types: remember the first
        _KINDS[event_type] = kind
    return kind


class IngestService:
    """The one place where agent messages become state, writes and replies."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        bus: LiveBus,
        clock: Clock,
        *,
        limits: Limits,
        stall_after_ms: int,
        outbox_max: int,
        policy: ConnectionLimits | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.bus = bus
        self.clock = clock
        self.limits = limits
        # For connections that did not opt into numbered delivery: their `seq` means nothing.
        self.unnumbered_limits = replace(limits, check_seq=False)
        self.stall_after_ms = stall_after_ms
        self.outbox_max = outbox_max
        self.policy = policy or ConnectionLimits()
        self.connections: dict[int, AgentConnection] = {}
        self.stats = IngestStats()
        self.rate = RateMeter(clock)
        self.pipeline: WritePipeline | None = None
        # Hooks for the control service: committed events, and an agent (re)registering.
        self.on_events: Callable[[list[StoredEvent]], None] | None = None
        self.on_agent_online: Callable[[str], None] | None = None
        # A Studio of a cluster (live/peers.py) sends events live only once committed, when
        # they have their ids (the commits number them), through `on_committed`; and tells
        # the others of each agent's view as it goes out (`on_view`).
        self.live_on_receipt = True
        self.on_committed: Callable[[CommitResult], None] | None = None
        self.on_view: Callable[[LiveAgent], None] | None = None
        # A producer connects here: the other Studios let go of it and wait for what they
        # took of it to be durable, before its durable mark is read (live/peers.py).
        self.on_claim: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._dirty: set[str] = set()  # agents whose view waits to go out
        self._slots_dealt = 0
        self._waiting_views: list[list[str]] = [[] for _ in range(VIEW_SLOTS)]
        self._views_due = [0.0] * VIEW_SLOTS  # loop time of each waiting slot's tick
        # The timer of the next tick, and when it is due: uvloop's `call_at` returns a plain
        # Handle, without `when()`, for a time already past (a loop held up under load).
        self._views_timer: asyncio.Handle | None = None
        self._views_timer_due = 0.0
        self._ids = itertools.count(1)
        self.next_event_id = 1  # events are numbered here, in the order they are queued
        self._fresh: list[StoredEvent] = []  # numbered this loop iteration, not yet published
        self._landing: dict[AgentConnection, int] = {}  # writes queued this loop iteration
        self._bad_counts_logged = -60_000

    def attach(self, pipeline: WritePipeline, first_event_id: int) -> None:
        self.pipeline = pipeline
        self.next_event_id = first_event_id

    # ---- connections ----

    def open_connection(self, remote: str) -> AgentConnection:
        conn = AgentConnection(next(self._ids), remote, self.outbox_max)
        conn.max_in_flight = self.policy.max_in_flight
        conn.tokens = float(self.policy.burst)
        conn.refilled_at = time.monotonic()
        self.connections[conn.id] = conn
        self.stats.connections_total += 1
        return conn

    def close_connection(self, conn: AgentConnection) -> None:
        """Let the connection's agents go: offline, unless another connection that registered
        them is still open; their history stays."""
        self.connections.pop(conn.id, None)
        self.stats.dropped_replies += conn.dropped_replies
        now = self.clock()
        writes: list[WriteOp] = []
        for agent_id in conn.agents:
            agent = self.registry.agents.get(agent_id)
            if agent is not None:
                self._let_go(agent, conn, now, writes)
        if conn.producer_id is not None:
            producer = self.registry.producers.get(conn.producer_id)
            if producer is not None and producer.connection == conn.id:
                producer.connection = None
        self._submit(writes)

    # ---- frames ----

    async def handle_binary(self, conn: AgentConnection) -> None:
        self.stats.frames += 1
        self._error(conn, binary_frame_error())

    async def handle_invalid_text(self, conn: AgentConnection, data: bytes) -> None:
        """Answer a text frame that is not UTF-8 (the codec names the fault)."""
        self.stats.frames += 1
        error = decode(data, self.limits).message
        if isinstance(error, ProtocolError):
            self._error(conn, error)

    async def handle_text(self, conn: AgentConnection, text: str) -> None:
        """Decode one text frame and apply every message in it, in order."""
        rest = self.take_text(conn, text)
        if rest is not None:
            await rest

    def take_text(self, conn: AgentConnection, text: str) -> Coroutine[Any, Any, None] | None:
        """Decode one text frame and apply its messages in order, as far as it can without waiting.

        None when the frame is handled. Otherwise a coroutine that handles the rest, for the
        caller to run to its end before the connection's next frame: the frame ran into the
        rate limit, holds a registration (which may wait for the writer), is a batch long
        enough to let other connections in between, or filled the write queue. The agent
        socket's common case thus creates no coroutine.
        """
        self.stats.frames += 1
        conn.received += 1
        limits = self.limits if conn.producer_id is not None else self.unnumbered_limits
        shape, message = decode_pair(text, limits)
        if conn.shape is None and shape is not None:
            conn.shape = shape
        items = message.items if isinstance(message, Batch) else (message,)
        batched = isinstance(message, Batch)
        conn.tokens -= float(len(items))  # float: compiled, a float minus an int is boxed
        if conn.tokens < 0.0 or len(items) > YIELD_EVERY:
            return self._apply(conn, items, batched, 0, [], None)
        # One time for a frame. The wall clock is called directly: through the `clock` attribute
        # it goes through Python's call protocol (650 instructions, callgrind; directly 250).
        clock = self.clock
        now = wall_clock_ms() if clock is wall_clock_ms else clock()
        writes: list[WriteOp] = []
        for index, item in enumerate(items):
            if conn.taken_over:
                break
            register = self._item(conn, item, writes, now, index if batched else -1)
            if register is not None:
                return self._apply(conn, items, batched, index + 1, writes, register)
        return self._handed_over(conn, writes)

    async def _apply(
        self,
        conn: AgentConnection,
        items: Sequence[ClientMessage | ProtocolError],
        batched: bool,
        start: int,
        writes: list[WriteOp],
        register: tuple[Register, int | None] | None,
    ) -> None:
        """`take_text` from `items[start]` on, waiting where it has to; first `register`."""
        if register is not None:
            await self._registered(conn, register, writes)
        elif conn.tokens < 0:  # the bucket is refilled (reading the clock) only when empty
            await self._throttle(conn, len(items))
        now = self.clock()
        for index in range(start, len(items)):
            if index and not index % YIELD_EVERY:
                # A big batch must not hold the loop from others. What it numbered so far is
                # queued first: events are queued (and so committed) in the order of their ids.
                self._submit(writes, conn)
                writes = []
                await asyncio.sleep(0)
                now = self.clock()
            if conn.taken_over:
                break
            register = self._item(conn, items[index], writes, now, index if batched else -1)
            if register is not None:
                await self._registered(conn, register, writes)
        rest = self._handed_over(conn, writes)
        if rest is not None:
            await rest

    async def _registered(
        self, conn: AgentConnection, register: tuple[Register, int | None], writes: list[WriteOp]
    ) -> None:
        """Apply a registration `_item` returned, then mark its sequence number as handled."""
        await self._register(conn, register[0], writes)
        if register[1] is not None:
            conn.unmarked_seq = register[1]

    def _item(
        self,
        conn: AgentConnection,
        item: ClientMessage | ProtocolError,
        writes: list[WriteOp],
        now: int,
        index: int,
    ) -> tuple[Register, int | None] | None:
        """Apply one message (item `index` of a batch, or -1); a registration is returned
        instead, with its sequence number.

        A registration may wait for the writer: the caller runs it with `_registered`.
        """
        self.stats.messages += 1
        seq = item.seq if conn.producer_id is not None else None
        if seq is not None:
            producer = self.registry.producers[conn.producer_id or ""]
            if seq <= producer.accepted_seq:
                self.stats.duplicates += 1
                if producer.durable_seq >= seq:
                    conn.ack(producer.durable_seq)
                return None
            producer.accepted_seq = seq
        if isinstance(item, Event) and conn.key is None and item.agent_id in conn.agents:
            pass  # the common case: an event for an agent this connection already carries
        elif not isinstance(item, (ProtocolError, Ping)):
            refusal = self._refusal(conn, item, None if index < 0 else index)
            if refusal is not None:
                self.stats.refused += 1
                item = refusal
        if isinstance(item, ProtocolError):
            self._error(conn, item)
        elif isinstance(item, Event):
            self._event(conn, item, writes, now)
        elif isinstance(item, Register):
            return item, seq
        elif isinstance(item, RegisterSession):
            self._register_session(conn, item, writes)
        elif isinstance(item, Ping):
            self._reply(conn, MessageType.PONG, None)
        elif isinstance(item, EndSession):
            self._end_session(conn, item, writes)
        elif isinstance(item, Unregister):
            self._unregister(conn, item, writes)
        if seq is not None:
            # Marked as handled only after its writes are queued: the mark goes out with the
            # next submit, in order behind them.
            conn.unmarked_seq = seq
        return None

    def _handed_over(
        self, conn: AgentConnection, writes: list[WriteOp]
    ) -> Coroutine[Any, Any, None] | None:
        """Submit a frame's writes; a coroutine to run if the connection must now wait."""
        if conn.taken_over:
            # A newer connection of this producer now owns it and resends everything past the
            # durable mark: what this frame did not hand over yet must not be stored twice.
            return None
        self._submit(writes, conn)
        if conn.in_flight > self.policy.max_in_flight or (
            self.pipeline is not None and self.pipeline.full
        ):
            return self._make_room(conn)
        return None

    async def _make_room(self, conn: AgentConnection) -> None:
        if conn.in_flight > self.policy.max_in_flight:
            # Fairness: a connection with this much unwritten stops being read until the writer
            # catches up with it, so one flooding agent cannot fill the queue others wait in.
            await conn.wait_for_writer()
        if self.pipeline is not None and self.pipeline.full:
            await self.pipeline.wait_for_space()

    async def _throttle(self, conn: AgentConnection, cost: int) -> None:
        """Token bucket per connection, once it ran dry: a flood is slowed, never dropped.

        The caller has taken this frame's cost from `conn.tokens` already.
        """
        policy = self.policy
        now = time.monotonic()
        conn.tokens = min(
            float(policy.burst) - cost,
            conn.tokens + (now - conn.refilled_at) * policy.messages_per_s,
        )
        conn.refilled_at = now
        if conn.tokens >= 0:
            return
        wait = -conn.tokens / policy.messages_per_s
        conn.throttled += 1
        self.stats.throttled_s += wait
        if now - conn.throttle_notice_at >= 1.0:
            conn.throttle_notice_at = now
            limit = f"{policy.messages_per_s:g} messages/s"
            self._reply(
                conn,
                MessageType.ERROR,
                {
                    "code": ErrorCode.RATE_LIMITED.value,
                    "message": f"over {limit}: slowed down",
                    "retry_after_ms": round(wait * 1000),
                },
            )
        await asyncio.sleep(wait)

    def _refusal(
        self, conn: AgentConnection, item: ClientMessage, index: int | None
    ) -> ProtocolError | None:
        """Policy checks: the key's agent scope and the per-connection caps."""
        agent_id = getattr(item, "agent_id", None)
        if agent_id is not None and conn.key is not None and agent_id not in conn.allowed:
            if not Auth.allows(conn.key, agent_id):
                return ProtocolError(
                    ErrorCode.FORBIDDEN_AGENT,
                    f"this agent key may not write for agent '{agent_id[:64]}'",
                    "agent_id",
                    item.seq,
                    index,
                )
            conn.allowed.add(agent_id)
        if (
            agent_id is not None
            and not isinstance(item, (Unregister, EndSession))
            and agent_id not in conn.agents
            and len(conn.agents) >= self.policy.max_agents
        ):
            return ProtocolError(
                ErrorCode.TOO_MANY_AGENTS,
                f"a connection may carry at most {self.policy.max_agents} agents",
                "agent_id",
                item.seq,
                index,
            )
        if conn.key is not None:
            session_id = getattr(item, "session_id", None)
            if session_id and not self._may_use_session(conn, session_id):
                return ProtocolError(
                    ErrorCode.FORBIDDEN_AGENT,
                    f"session '{session_id[:64]}' is another agent's, which this agent key "
                    "may not write for",
                    "session_id",
                    item.seq,
                    index,
                )
        if isinstance(item, RegisterSession) and item.session_id not in conn.sessions:
            if len(conn.sessions) >= self.policy.max_sessions:
                return ProtocolError(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"a connection may register at most {self.policy.max_sessions} sessions",
                    "session_id",
                    item.seq,
                    index,
                )
            conn.sessions.add(item.session_id)
        return None

    def _may_use_session(self, conn: AgentConnection, session_id: str) -> bool:
        """Whether a keyed connection may name `session_id`: not while it is the open session
        of an agent its key may not write for. (A stored session of such an agent keeps its
        owner and status: the store's `owners` condition.)"""
        if session_id in conn.sessions:
            return True
        key = conn.key
        return key is None or not any(
            a.current_session_id == session_id
            and a.id not in conn.allowed
            and not Auth.allows(key, a.id)
            for a in self.registry.agents.values()
        )

    def _owners(self, conn: AgentConnection) -> tuple[str, ...] | None:
        """The agents whose stored sessions a connection may change: any (None) without a key."""
        return None if conn.key is None else tuple(conn.allowed)

    def _submit(self, writes: list[WriteOp], conn: AgentConnection | None = None) -> None:
        """Hand writes to the pipeline; a connection's count in flight drops once they land.

        For a reliable-delivery connection the writes carry the mark of the numbered messages
        they come from, so `last_seq` never covers a message whose writes are not stored.
        """
        if conn is not None and conn.unmarked_seq and conn.producer_id is not None:
            writes.append(ops.MarkProducer(conn.producer_id, conn.unmarked_seq, len(writes)))
            conn.unmarked_seq = 0
        if not writes or self.pipeline is None:
            return
        self.pipeline.submit(writes)
        if conn is not None:
            count = len(writes)
            conn.in_flight += count
            landing = self._landing
            if not landing:
                asyncio.get_running_loop().call_soon(self._land_when_durable)
            landing[conn] = landing.get(conn, 0) + count

    def _land_when_durable(self) -> None:
        """One barrier per loop iteration, not per frame, gives connections their writes back."""
        landing, self._landing = self._landing, {}
        if self.pipeline is not None:
            self.pipeline.when_durable(lambda: _land(landing))

    def _reply_when_durable(
        self,
        conn: AgentConnection,
        writes: list[WriteOp],
        mtype: MessageType,
        data: dict[str, object] | None,
    ) -> None:
        """Reply once this message's writes are stored, so the API already shows them."""
        if self.pipeline is None:
            conn.reply(mtype, data)
            return
        unit = writes[:]  # the pipeline's from now on; the caller's list goes on empty
        writes.clear()
        self._submit(unit, conn)
        conn.deferred += 1

        def send() -> None:
            conn.deferred -= 1
            conn.reply(mtype, data)

        self.pipeline.when_durable(send)

    def _reply(
        self, conn: AgentConnection, mtype: MessageType, data: dict[str, object] | None
    ) -> None:
        """Reply now, unless an earlier reply still waits for storage: replies keep order."""
        if conn.deferred and self.pipeline is not None:
            self._reply_when_durable(conn, [], mtype, data)
        else:
            conn.reply(mtype, data)

    def _error(self, conn: AgentConnection, error: ProtocolError) -> None:
        self.stats.errors += 1
        self._reply(conn, MessageType.ERROR, error_payload(error))

    # ---- message kinds ----

    def _agent(self, conn: AgentConnection, agent_id: str, writes: list[WriteOp]) -> LiveAgent:
        """Return the agent, creating it implicitly (and attaching it here) when unknown."""
        agent = self.registry.agents.get(agent_id)
        if agent is not None and agent.connection is not None:
            return agent  # the common case: known and attached (here or elsewhere)
        now = self.clock()
        if agent is None:
            agent = LiveAgent(id=agent_id, registered_at=now, last_seen=now, implicit=True)
            self.registry.add(agent)
            writes.append(ops.UpsertAgent(agent_id, now, implicit=True))
        if agent.connection is None:
            agent.connection = conn.id
            agent.carriers.append(conn.id)
            agent.connected_at = now
            conn.agents.add(agent_id)
            self._changed(agent)
        return agent

    async def _register(self, conn: AgentConnection, msg: Register, writes: list[WriteOp]) -> None:
        now = self.clock()
        reply: dict[str, object] = {
            "agent_id": msg.agent_id,
            "message": "Agent registered successfully",
        }
        resumed = False
        if msg.producer_id is not None:
            # A producer id is the client's word: under a key, it is that key's, so that a
            # client of another key naming it can neither take it over nor move its mark
            # (acknowledging, then skipping, the owner's messages).
            producer_id = (
                msg.producer_id if conn.key is None else f"{conn.key.id}/{msg.producer_id}"
            )
            last_seq = await self._claim_producer(conn, producer_id, writes)
            reply["last_seq"] = last_seq
            resumed = last_seq > 0
        agent = self.registry.agents.get(msg.agent_id)
        if agent is None:
            agent = LiveAgent(id=msg.agent_id, registered_at=now, last_seen=now)
            self.registry.add(agent)
        agent.name = msg.name or agent.name
        agent.model = msg.model or agent.model
        agent.template_id = msg.template_id or agent.template_id
        agent.capabilities = msg.capabilities or agent.capabilities
        agent.metadata = msg.metadata or agent.metadata
        # A producer that sent before is the same run reconnecting (after a network cut or the
        # Studio's restart): it is still in the state it last reported. A register without a
        # status beside a connection that carries the agent (a forked worker's) leaves the
        # state to that one.
        carried = agent.connection is not None and agent.connection != conn.id
        if not ((resumed and agent.state) or (carried and not msg.status)):
            agent.state = msg.status or "ready"
        agent.implicit = False
        agent.connection = conn.id  # a re-register (a reconnect) takes the agent over
        if conn.id not in agent.carriers:
            agent.carriers.append(conn.id)
        agent.connected_at = now
        agent.last_seen = now
        conn.agents.add(msg.agent_id)
        if msg.producer_id is not None or "control" in msg.capabilities:
            conn.accepts_control = True
        writes.append(agent.upsert_op(now))
        writes.append(self._state_op(agent))
        self._changed(agent)
        self._reply_when_durable(conn, writes, MessageType.REGISTERED, reply)
        hook = self.on_agent_online
        if hook is not None and conn.accepts_control and self.pipeline is not None:
            agent_id = msg.agent_id
            # Queued behind `registered`, so the agent knows it is registered before any
            # decision made while it was away reaches it.
            self.pipeline.when_durable(lambda: hook(agent_id))

    async def _claim_producer(
        self, conn: AgentConnection, producer_id: str, writes: list[WriteOp]
    ) -> int:
        """Bind a producer to this connection; return its durable sequence number."""
        producer = self.registry.producers.get(producer_id)
        if producer is not None and producer.connection not in (None, conn.id):
            old = self.connections.get(producer.connection or 0)
            if old is not None:
                old.taken_over = True  # it applies nothing more: the new connection resends
                old.producer_id = None
                old.request_close(CloseCode.TAKEN_OVER, "taken over by a newer connection")
        # Everything handed over so far (by any connection) must be durable before answering.
        unit = writes[:]  # the pipeline's from now on; the caller's list goes on empty
        writes.clear()
        self._submit(unit, conn)
        if self.pipeline is not None:
            await self.pipeline.barrier()
        if producer is None or (producer.connection is None and not self.live_on_receipt):
            # In a cluster, a producer that left may have gone on at another Studio since:
            # what is durable is the database's word, once the others let go of it.
            claim = self.on_claim
            if claim is not None:
                await claim(producer_id)
            loop = asyncio.get_running_loop()
            durable = await loop.run_in_executor(None, self.store.producer_seq, producer_id)
            producer = self.registry.producers.get(producer_id)
            if producer is None:
                producer = Producer(producer_id, durable, durable)
                self.registry.producers[producer_id] = producer
            else:
                producer.durable_seq = max(producer.durable_seq, durable)
        producer.connection = conn.id
        producer.accepted_seq = producer.durable_seq
        conn.producer_id = producer_id
        return producer.durable_seq

    async def release_producer(self, producer_id: str) -> bool:
        """Another Studio of the cluster took a producer over: close its connection here, as
        taken over, and wait until what it handed over is durable; False if it had none."""
        producer = self.registry.producers.get(producer_id)
        if producer is None or producer.connection is None:
            return False
        old = self.connections.get(producer.connection)
        producer.connection = None
        if old is not None:
            old.taken_over = True  # it applies nothing more: the other Studio's resends
            old.producer_id = None
            old.request_close(CloseCode.TAKEN_OVER, "taken over by a connection to another Studio")
        if self.pipeline is not None:
            await self.pipeline.barrier()
        return True

    def _register_session(
        self, conn: AgentConnection, msg: RegisterSession, writes: list[WriteOp]
    ) -> None:
        agent = self._agent(conn, msg.agent_id, writes)
        now = self.clock()
        writes.append(
            ops.UpsertSession(
                msg.session_id,
                msg.agent_id,
                now,
                created_at=msg.created_at_ms,
                status=msg.status,
                metadata=msg.metadata,
                owners=self._owners(conn),
            )
        )
        agent.current_session_id = msg.session_id
        agent.last_seen = now
        writes.append(self._state_op(agent))
        self._changed(agent)
        self._reply_when_durable(
            conn,
            writes,
            MessageType.SESSION_REGISTERED,
            {"session_id": msg.session_id, "message": "Session registered successfully"},
        )

    def _end_session(self, conn: AgentConnection, msg: EndSession, writes: list[WriteOp]) -> None:
        now = self.clock()
        allowed = self._owners(conn)
        writes.append(ops.EndSession(msg.session_id, msg.status, now, owners=allowed))
        if msg.agent_id:
            agent = self.registry.agents.get(msg.agent_id)
            owners = [agent] if agent is not None else []
        else:  # the session id alone is enough: whichever agent has it open lets it go
            owners = [
                a
                for a in self.registry.agents.values()
                if a.current_session_id == msg.session_id and (allowed is None or a.id in allowed)
            ]
        for agent in owners:
            if agent.current_session_id == msg.session_id:
                agent.current_session_id = None
                writes.append(self._state_op(agent))
                self._changed(agent)

    def _unregister(self, conn: AgentConnection, msg: Unregister, writes: list[WriteOp]) -> None:
        agent = self.registry.agents.get(msg.agent_id)
        conn.agents.discard(msg.agent_id)
        if agent is not None:
            now = self.clock()
            if agent.current_session_id is not None and agent.connection == conn.id:
                # The agent said goodbye: its open session is over (the original document has
                # no end_session, so its clients' sessions ended nowhere else).
                session = agent.current_session_id
                writes.append(ops.EndSession(session, "completed", now, owners=self._owners(conn)))
                agent.current_session_id = None
                writes.append(self._state_op(agent))
            self._let_go(agent, conn, now, writes)

    def _let_go(
        self, agent: LiveAgent, conn: AgentConnection, now: int, writes: list[WriteOp]
    ) -> None:
        """`conn` no longer carries `agent`: another connection that registered it takes it
        on (the newest), else it is offline."""
        carriers = agent.carriers
        if conn.id in carriers:
            carriers.remove(conn.id)
        if agent.connection != conn.id:
            return
        agent.connection = carriers[-1] if carriers else None
        if agent.connection is None:
            agent.last_seen = now
            writes.append(self._state_op(agent))
        self._changed(agent)

    def _event(self, conn: AgentConnection, msg: Event, writes: list[WriteOp], now: int) -> None:
        self.stats.events += 1
        agent = self._agent(conn, msg.agent_id, writes)
        event = msg.event
        session_id = msg.session_id or agent.current_session_id
        if msg.session_id and msg.session_id != agent.current_session_id:
            # An event naming a session nobody registered still gets a session record ("" names
            # none: the event goes to the current session, as without the field).
            writes.append(ops.UpsertSession(msg.session_id, msg.agent_id, now, implicit=True))
        usage = None
        etype = msg.event_type
        state_changed = False
        kind = _KINDS.get(etype)
        if kind is None:
            kind = _kind_of(etype)
        if kind:
            usage, state_changed = self._effect(kind, event, agent)
        severity = event.get("severity")
        try:
            payload = _dumps(event)
        except TypeError:  # an integer past 64 bits (the codec parsed it whole): JSON has none
            payload = dumps_wide(event)
        event_id = self.next_event_id
        self.next_event_id = event_id + 1
        # Built by `tuple.__new__`, which skips the named tuple's generated Python `__new__`.
        stored: StoredEvent = _new_tuple(
            _STORED_EVENT,
            (
                event_id,
                msg.agent_id,
                session_id,
                msg.channel._value_,  # the member's own attribute: `.value` is a slow descriptor
                etype,
                severity if isinstance(severity, str) else None,
                now,
                msg.client_ts_ms,
                payload,
            ),
        )
        writes.append(stored)
        if usage is not None:
            used_at = msg.client_ts_ms
            if used_at is None or not now - USAGE_MAX_AGE_MS <= used_at <= now:
                # A clock a little fast is now (a window ending now left such usage out until
                # real time caught up); one far off, or absurdly old, is the receive time too.
                used_at = now
            writes.append(ops.RecordUsage(event_id, msg.agent_id, session_id, used_at, usage))
        if self.live_on_receipt:
            if not self._fresh:
                asyncio.get_running_loop().call_soon(self._publish)
            self._fresh.append(stored)
        agent.event_count += 1
        if etype[:1] in "eE" and counts_as_error(etype, stored[5]):
            agent.error_count += 1
        agent.last_event_at = now
        agent.last_seen = now
        if state_changed:
            writes.append(self._state_op(agent))
        if agent.id not in self._dirty:  # else its view is already due to go out
            self._changed(agent)

    def _effect(
        self, kind: str, event: dict[str, Any], agent: LiveAgent
    ) -> tuple[Usage | None, bool]:
        """Apply what an event of one of the types in `_EFFECTS` does to its agent; return
        its usage, and whether its state changed."""
        if kind == "token_usage":
            usage, bad = read_usage(event, agent.model)
            if bad:
                self._bad_counts(agent.id, bad)
            return usage, False
        if kind == "state_changed":
            state = event.get("state")
            if isinstance(state, str) and state and len(state) <= self.limits.max_type_length:
                changed = state != agent.state
                agent.state = state
                return None, changed
            return None, False
        state = "completed" if event.get("reason", "completed") == "completed" else "idle"
        changed = state != agent.state
        agent.state = state
        return None, changed

    def count_elsewhere(
        self, events: list[StoredEvent], usage: list[tuple[str, Usage]], *, read: bool = False
    ) -> None:
        """Add events another Studio of the cluster committed, and their usage, to their
        agents' live counts and state, as `_event` and `on_commit` do for this one's.

        `read`: read from the database, they may be this Studio's own, committed but not yet
        handed over (and counted on receipt, their usage at the commit): those of agents
        connected here, and their usage, are left out (an agent connected here sending
        through another Studio is rare; its count comes at the next start).
        """
        agents = self.registry.agents
        changed: dict[str, LiveAgent] = {}
        for e in events:
            agent = agents.get(e.agent_id)
            if agent is None:
                agent = LiveAgent(id=e.agent_id, registered_at=e.ts, last_seen=e.ts, implicit=True)
                self.registry.add(agent)
            elif read and agent.connection is not None and agent.connection > 0:
                continue
            agent.event_count += 1
            if counts_as_error(e.event_type, e.severity):
                agent.error_count += 1
            agent.last_event_at = e.ts
            agent.last_seen = max(agent.last_seen, e.ts)
            kind = _KINDS.get(e.event_type)
            if kind is None:
                kind = _kind_of(e.event_type)
            if kind == "state_changed" or kind == "done":
                try:
                    body = orjson.loads(e.payload)
                except orjson.JSONDecodeError:
                    body = None
                if isinstance(body, dict):
                    self._effect(kind, body, agent)
            changed[agent.id] = agent
        for agent_id, u in usage:
            found = agents.get(agent_id)
            if found is not None and not (
                read and found.connection is not None and found.connection > 0
            ):
                found.usage.add(u)
                changed[agent_id] = found
        for agent in changed.values():
            self._changed(agent)

    def agent_changed(self, agent: LiveAgent) -> None:
        """An agent's view changed from outside the service (the cluster's link)."""
        self._changed(agent)

    def _bad_counts(self, agent_id: str, fields: list[str]) -> None:
        """Count the token counts that could not be read, or were capped; say so in the log
        at most once a minute."""
        self.stats.bad_token_counts += len(fields)
        now = self.clock()
        if now - self._bad_counts_logged >= 60_000:
            self._bad_counts_logged = now
            log.warning(
                "agent %s sent a token_usage whose %s held no token count (a whole number "
                "from 0 to %s): counted as absent, or as the cap; "
                "aster_token_counts_invalid_total counts such fields",
                agent_id,
                ", ".join(fields),
                MAX_TOKENS,
            )

    def _publish(self) -> None:
        """Send this loop iteration's events live, in id order, before they are committed.

        Subscribers see an event within a loop iteration of its arrival instead of after the
        next group commit and its fsync; acks to agents still wait for the commit.
        """
        fresh, self._fresh = self._fresh, []
        self.bus.publish(fresh)

    # ---- after commit ----

    def on_commit(self, result: CommitResult) -> None:
        """Runs on the loop after each commit: counters, usage, control hooks, acks."""
        events = result.events
        if events:
            self.rate.add(len(events))
            if self.on_committed is None:
                self.bus.committed(events[-1].id)
            else:
                self.on_committed(result)
            if self.on_events is not None:
                self.on_events(events)
        agents = self.registry.agents
        for agent_id, usage in result.usage:
            agent = agents.get(agent_id)
            if agent is not None:
                agent.usage.add(usage)
                self._changed(agent)
            else:  # deleted while its usage was being written
                self.registry.forgotten_usage.setdefault(agent_id, UsageTotals()).add(usage)
        for producer_id, seq in result.producers.items():
            producer = self.registry.producers.get(producer_id)
            if producer is None:
                continue
            producer.durable_seq = max(producer.durable_seq, seq)
            conn = self.connections.get(producer.connection or 0)
            if conn is not None:
                conn.ack(producer.durable_seq)
        for producer_id in result.failed_producers:
            self._resend_from_durable(producer_id)

    def _resend_from_durable(self, producer_id: str) -> None:
        """The store refused a producer's writes: close its connection, so that it reconnects
        and resends what is not durable (its later writes were not stored either: the
        pipeline's fence), then let its writes through again."""
        producer = self.registry.producers.get(producer_id)
        if producer is not None:
            producer.accepted_seq = producer.durable_seq
            conn = self.connections.get(producer.connection or 0)
            if conn is not None:
                conn.taken_over = True  # it applies nothing more, as a taken-over connection
                conn.request_close(CloseCode.INTERNAL_ERROR, "storage failed; reconnect to resend")
        if self.pipeline is not None:
            self.pipeline.resume_producer(producer_id)

    def check_stalls(self) -> None:
        """Publish agents whose status changed with time alone (working but silent)."""
        now = self.clock()
        for agent in self.registry.agents.values():
            if agent.connection is not None and agent.status(now, self.stall_after_ms) != (
                agent.reported_status
            ):
                self._changed(agent)

    def _changed(self, agent: LiveAgent) -> None:
        """Note that an agent's view changed; it goes out at its slot's next tick.

        A slot's ticks are VIEW_INTERVAL_S apart, so an agent's view goes out at most that
        often and at most that long after it changed.
        """
        agent_id = agent.id
        if agent_id in self._dirty:
            return
        self._dirty.add(agent_id)
        slot = agent.view_slot
        if slot < 0:
            slot = agent.view_slot = self._slots_dealt % VIEW_SLOTS
            self._slots_dealt += 1
        waiting = self._waiting_views[slot]
        waiting.append(agent_id)
        if len(waiting) > 1:
            return  # the slot's tick is set already
        loop = asyncio.get_running_loop()
        tick = VIEW_INTERVAL_S / VIEW_SLOTS
        # The first tick at least half a step away: one that fired a little early (below) is
        # never the next one of its slot.
        k = int(loop.time() / tick + 0.5) + 1
        due = (k + (slot - k) % VIEW_SLOTS) * tick
        self._views_due[slot] = due
        timer = self._views_timer
        if timer is None or due < self._views_timer_due:
            if timer is not None:
                timer.cancel()
            self._views_timer = loop.call_at(due, self._flush_views)
            self._views_timer_due = due

    def _flush_views(self) -> None:
        """Publish the views of the slots whose tick has come; set the timer for the next."""
        self._views_timer = None
        loop = asyncio.get_running_loop()
        # A timer may fire a little early: a tick counts as come within a tenth of its step.
        until = loop.time() + VIEW_INTERVAL_S / VIEW_SLOTS / 10
        now = self.clock()
        publish = len(self.bus) > 0
        following = 0.0
        for slot in range(VIEW_SLOTS):
            waiting = self._waiting_views[slot]
            if not waiting:
                continue
            due = self._views_due[slot]
            if due > until:
                following = due if not following else min(following, due)
                continue
            self._waiting_views[slot] = []
            for agent_id in waiting:
                self._dirty.discard(agent_id)
                agent = self.registry.agents.get(agent_id)
                if agent is None:
                    continue
                agent.reported_status = agent.status(now, self.stall_after_ms)
                if publish:
                    self.bus.changed("agent", agent.view(now, self.stall_after_ms))
                if self.on_view is not None:
                    self.on_view(agent)
        if following:
            self._views_timer = loop.call_at(following, self._flush_views)
            self._views_timer_due = following

    def _state_op(self, agent: LiveAgent) -> ops.AgentState:
        return ops.AgentState(agent.id, agent.state, agent.last_seen, agent.current_session_id)
