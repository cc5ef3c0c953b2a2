"""The delivery worker: one daemon thread that owns the connection.

Agent threads only append tuples to a bounded deque. This thread turns them into protocol
messages, numbers and encodes them (`Outbox`), sends them in `batch` frames, reads acks, and
reconnects with exponential back-off and jitter, re-registering the agent and its open sessions.
Each connection is opened (connect and `register`) on a short-lived thread of its own, so that a
connect that hangs for its whole timeout never stops the queue from moving into the resend
buffer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._config import Settings, redact_url, target_url
from ._control import PERMISSION, QUESTION, ControlHub, SdkThread
from ._delivery import Outbox, batch_frame
from ._diagnostics import Diagnostics
from ._errors import ConnectionClosed, Refused, TransportError
from ._transport import Connection, Transport
from .protocol import (
    DEFAULT_LIMITS,
    Ack,
    CloseCode,
    Control,
    ErrorCode,
    Registered,
    ServerError,
    SessionStatus,
    decode_server,
    dumps,
    end_session_message,
    event_message,
    loads,
    register_message,
    register_session_message,
    too_deep,
)

try:
    import orjson  # noqa: F401  (only probing: the codec uses it when present)

    _FAST_CODEC = True
except ImportError:  # pragma: no cover - exercised only without orjson
    _FAST_CODEC = False

logger = logging.getLogger("aster_studio_sdk")

# Queue items are plain tuples (cheap to build on the agent's thread); the first field is the op,
# a plain int rather than an enum member for the same reason. Ops below OP_OPEN are events (the
# drop policy may discard them); the others are control items, never dropped.
OP_EVENT = 0  # (OP_EVENT, session_id, time, channel, event_type, fields)
OP_TEXT = 1  # (OP_TEXT, session_id, time, delta, step): text_chunk, the most frequent event
OP_OPEN = 2  # (OP_OPEN, session_id, time, metadata)
OP_END = 3  # (OP_END, session_id, time, status)
OP_FLUSH = 4  # (OP_FLUSH, FlushWaiter)
OP_CLOSE = 5  # (OP_CLOSE,)

Item = tuple[Any, ...]

_PUMP_LIMIT = 5_000  # items moved per loop turn, so acks are read in between
_RECV_LIMIT = 1_000
_END_SESSION_PREFIX = b'{"type":"end_session"'  # end_session_message() puts "type" first
_IDLE_AFTER = 1.0  # seconds without traffic before the worker polls at the idle interval
# Error codes that refuse a `register` for what it holds (a name over the Studio's limits, say),
# not for who sends it: registering with the agent id alone then succeeds.
_INVALID_REGISTER = frozenset(
    {
        ErrorCode.INVALID_UTF8,
        ErrorCode.INVALID_JSON,
        ErrorCode.NOT_AN_OBJECT,
        ErrorCode.MISSING_TYPE,
        ErrorCode.MISSING_FIELD,
        ErrorCode.INVALID_FIELD,
        ErrorCode.STRING_TOO_LONG,
    }
)
_KEY_REFUSALS = frozenset({"http_401", "http_403", ErrorCode.FORBIDDEN_AGENT})


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """Who the client reports as; sent in every `register`."""

    agent_id: str
    name: str | None
    model: str | None
    status: str | None
    capabilities: tuple[str, ...]
    metadata: Mapping[str, Any]
    producer_id: str
    # A forked child's client speaks for the agent beside its parent: it leaves the agent's
    # state and presence to the parent (no status on register, no unregister at close).
    forked: bool = False


class FlushWaiter:
    """A flush request: the worker sets `event` once everything before it was delivered."""

    __slots__ = ("abandoned", "barrier", "event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.barrier = -1
        self.ok = False
        self.abandoned = False


@dataclass(slots=True)
class Opened:
    """What a connection attempt came to: a registered connection, or why there is none."""

    conn: Connection | None = None
    last_seq: int | None = None  # the server's, None without the reliable-delivery extension
    early: list[object] = field(default_factory=list)  # server messages before `registered`
    error: BaseException | None = None


class Opening:
    """One connection attempt, run on its own short-lived daemon thread.

    Opening can hang for its whole timeout (a blackholed address, a server that accepts TCP
    but never completes the WebSocket handshake or never answers `register`); meanwhile the
    worker keeps moving the queue into the resend buffer, which holds far more, and still
    stops on time at close. The attempt touches none of the worker's state: the worker takes
    its outcome, or abandons it (the connection is then closed by whichever side is last).
    """

    def __init__(self, run: Callable[[], Opened], wake: threading.Event) -> None:
        self._lock = threading.Lock()
        self._outcome: Opened | None = None
        self._abandoned = False
        self._wake = wake
        SdkThread(
            target=self._run, args=(run,), name="aster-studio-sdk-connect", daemon=True
        ).start()

    @property
    def outcome(self) -> Opened | None:
        """Return the outcome once the attempt ended, else None."""
        return self._outcome

    def abandon(self) -> None:
        """Give up on the attempt (the worker is ending): its connection, if any, is closed."""
        with self._lock:
            self._abandoned = True
            outcome = self._outcome
        if outcome is not None and outcome.conn is not None:
            with contextlib.suppress(Exception):  # a broken transport must not stop the worker
                outcome.conn.close()

    def _run(self, run: Callable[[], Opened]) -> None:
        try:
            outcome = run()
        except BaseException as exc:  # the worker reports it, as any failed attempt
            outcome = Opened(error=exc)
        with self._lock:
            self._outcome = outcome
            abandoned = self._abandoned
        if abandoned and outcome.conn is not None:
            with contextlib.suppress(Exception):
                outcome.conn.close()
        self._wake.set()


class Counters:
    """Worker-side counters; written by the worker thread only, read by anyone."""

    __slots__ = (
        "delivered",
        "connect_failures",
        "connects",
        "control_messages",
        "dequeued",
        "disconnects",
        "frames",
        "oversized",
        "refused",
        "rejected",
        "resent",
        "sent",
        "undelivered",
        "unencodable",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    delivered: int
    connect_failures: int
    connects: int
    control_messages: int
    dequeued: int
    disconnects: int
    frames: int
    oversized: int
    refused: int
    rejected: int
    resent: int
    sent: int
    undelivered: int
    unencodable: int


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def encode(msg: dict[str, Any]) -> bytes | None:
    """Encode a message as JSON (stdlib fallback for odd values); None when impossible.

    Whatever the agent passed, the result is valid UTF-8 JSON the server accepts: a frame it
    cannot parse would be refused whole and resent forever.
    """
    if _FAST_CODEC:
        try:
            # orjson's bytes keep a ~4 KiB allocation however short the JSON; the resend buffer
            # holds thousands, so keep a compact copy (about 0.15 us).
            return b"%b" % (dumps(msg),)
        except Exception:
            pass  # odd keys, huge ints, lone surrogates, a dict changed meanwhile: go slow
    for attempt in range(2):
        try:  # also catches a dict the agent changes while we read it (RuntimeError)
            text = json.dumps(
                # Copied with NaN as null only once json.dumps found no cycle in it (below).
                msg if attempt == 0 else _finite(msg),
                separators=(",", ":"),
                ensure_ascii=False,
                default=_json_default,
                allow_nan=False,
                skipkeys=True,
            )
        except ValueError as exc:
            if "ircular" in str(exc):  # a value that holds itself: no JSON for it
                return None
            continue  # NaN or infinity: retry with them as null, as orjson writes them
        except Exception:
            return None
        return text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    return None


# A message rides in a batch frame, two levels below its top; the Studio refuses a frame that
# nests deeper than its limit whole, with every message in it (docs/security.md).
MAX_MESSAGE_DEPTH = DEFAULT_LIMITS.max_depth - 2


def nests_too_deep(data: bytes) -> bool:
    """Return whether the Studio would find an encoded message nested too deeply.

    The protocol's own check, on the JSON as the Studio parses it: a walk of the Python value
    would miss what the encoder writes as objects and arrays (orjson writes a dataclass as an
    object).
    """
    try:
        parsed = loads(data)
    except (ValueError, RecursionError):  # past the parser's own depth limit: deeper still
        return True
    return too_deep(parsed, MAX_MESSAGE_DEPTH, len(data) // 2)


_OMITTED = "[omitted by aster-studio-sdk: too large or not encodable as JSON]"


def _without_payload(
    msg: dict[str, Any], event: dict[str, Any], limit: int
) -> Iterator[dict[str, Any]]:
    """Yield a tool call's event with less and less of its bulky parts: without the call's
    arguments; without its result (an intermediate result's data); without both (its error
    cut short). Nothing for any other event."""
    etype = event.get("event_type")
    call = event.get("call")
    if not isinstance(etype, str) or not etype.startswith("tool:") or not isinstance(call, dict):
        return
    for omit_arguments, omit_result in ((True, False), (False, True), (True, True)):
        slim_call = dict(call)
        slim_event = dict(event, call=slim_call)
        if omit_arguments and "arguments" in slim_call:
            slim_call["arguments"] = {"omitted": _OMITTED}
        if omit_result:
            if "result" in slim_call:
                slim_call["result"] = _OMITTED
            if "data" in slim_event:
                slim_event["data"] = _OMITTED
        if omit_arguments and omit_result:
            for holder in (slim_call, slim_event):
                error = holder.get("error")
                if isinstance(error, str) and len(error) > limit // 8:
                    holder["error"] = error[: limit // 8] + "..."
        yield dict(msg, event=slim_event)


def _unparsable_number(data: bytes) -> bool:
    """Return whether parsing fails on a number rather than on depth (a 400-digit integer:
    the parser reads it as a float and finds it infinite)."""
    try:
        loads(data)
    except RecursionError:
        return False
    except ValueError as exc:
        text = str(exc).lower()
        return "number" in text or "digits" in text or "infinity" in text
    return False


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def _finite(value: Any, depth: int = 0) -> Any:
    """Return a copy with NaN and infinities as None (JSON has no such numbers).

    Only for values without cycles (json.dumps found none): a cycle copied as a tree would be
    as deep as the limit and as wide as two to the power of it.
    """
    if depth > 100:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, depth + 1) for v in value]
    return value


class Worker:
    """Own the connection; move queued items to the Studio until closed."""

    def __init__(
        self,
        settings: Settings,
        agent: AgentInfo,
        queue: deque[Item],
        transport: Transport,
        diagnostics: Diagnostics,
        control: ControlHub | None = None,
    ) -> None:
        self._settings = settings
        self._shown_url = redact_url(settings.url)  # masked already, unless built by hand
        self._control = control
        self._opts = settings.delivery
        self._agent = agent
        self._queue = queue
        self._transport = transport
        self._diag = diagnostics
        self.counters = Counters()
        self._outbox = Outbox(self._opts.max_unacked_messages, self._opts.max_unacked_bytes)
        self._headers: dict[str, str] = {}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"
        register = register_message(
            agent.agent_id,
            name=agent.name,
            status=None if agent.forked else agent.status,
            model=agent.model,
            # "control": this connection wants the Studio's decisions (docs/control.md).
            capabilities=[*(c for c in agent.capabilities if c != "control"), "control"],
            metadata=dict(agent.metadata) or None,
            producer_id=agent.producer_id,
        )
        # The agent id alone: what the Studio cannot refuse for its content.
        self._minimal_frame = dumps(
            register_message(
                agent.agent_id, status=None, capabilities=["control"], producer_id=agent.producer_id
            )
        )
        self._register_frame = encode(register) or self._minimal_frame
        self._conn: Connection | None = None
        self._opening: Opening | None = None
        self.reliable: bool | None = None
        self._sessions: dict[str, dict[str, Any]] = {}
        self._waiters: list[FlushWaiter] = []
        self._wake = threading.Event()
        self.done = threading.Event()
        self.delivered_all = False
        self._close_deadline: float | None = None
        self._close_barrier: int | None = None
        self._attempt = 0
        self._next_attempt = 0.0
        self._last_send = 0.0
        self._last_progress = 0.0
        self._busy_at = 0.0
        self._flush_now = False
        self._connected_once = False
        self._reported_drops = (0, 0, 0)  # queue full, oversized, unencodable: last logged
        self._next_report = 0.0
        self._thread = SdkThread(target=self._run, name="aster-studio-sdk", daemon=True)

    # ---- called from other threads ----

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def started(self) -> bool:
        """Return whether the thread was started."""
        return self._thread.ident is not None

    @property
    def thread(self) -> threading.Thread:
        """Return the worker's thread."""
        return self._thread

    @property
    def connected(self) -> bool:
        """Return whether a connection is open and registered."""
        return self._conn is not None

    @property
    def unacked(self) -> int:
        """Return how many encoded messages wait for delivery."""
        return len(self._outbox)

    def wake(self) -> None:
        """Make the worker look at the queue now."""
        self._wake.set()

    def abort(self) -> None:
        """Drop the connection from another thread (the close deadline passed; I/O is stuck)."""
        conn = self._conn
        if conn is not None and not self.done.is_set():
            with contextlib.suppress(Exception):
                conn.abort()

    def request_close(self, deadline: float) -> None:
        """Ask the worker to deliver what it has, end open sessions and stop by `deadline`."""
        current = self._close_deadline
        if current is None or deadline < current:
            self._close_deadline = deadline
        self._queue.append((OP_CLOSE,))
        self._wake.set()

    # ---- the thread ----

    def _run(self) -> None:
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception as exc:  # an SDK bug: count it, start over on a new connection
                    self._diag.internal("worker", exc)
                    self._abandon(exc)
        except BaseException as exc:  # the worker must end cleanly whatever happened
            self._diag.internal("worker", exc)
        finally:
            self._finish()

    def _abandon(self, exc: BaseException) -> None:
        conn, self._conn = self._conn, None
        self.reliable = None
        self._notify_control(None)
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken transport must not end the worker
                conn.close()
        self._retry_later(exc)

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            deadline = self._close_deadline
            if deadline is not None and (self._closing_done() or now >= deadline):
                return
            self._pump()
            if self._conn is None:
                self._connect()
            conn = self._conn
            if conn is not None:
                try:
                    self._receive(conn)
                    self._send(conn)
                    self._watch_acks()
                except TransportError as exc:
                    self._lost(exc)
            self._resolve_waiters()
            self._report_drops()
            if self._queue and self._outbox.has_room() and len(self._queue) >= _PUMP_LIMIT:
                continue  # a backlog: keep moving without sleeping
            self._wait()

    def _wait(self) -> None:
        opts = self._opts
        now = time.monotonic()
        if self._conn is None:
            # An attempt under way wakes us when it ends; the queue, when half full.
            wait = 0.1 if self._opening is not None else self._next_attempt - now
            timeout = min(max(wait, 0.0), 0.1)
        elif self._outbox.unsent:
            timeout = max(min(self._last_send + opts.flush_interval - now, opts.poll_interval), 0)
        elif (
            self._queue
            or self._outbox.in_flight
            or self._waiters
            or now - self._busy_at < _IDLE_AFTER
        ):
            timeout = opts.poll_interval
        else:
            # Idle for a while: look less often (an idle agent should cost next to nothing).
            timeout = max(opts.idle_poll_interval, opts.poll_interval)
        if self._close_deadline is not None:
            timeout = min(timeout, max(self._close_deadline - now, 0.0))
        if timeout > 0 and self._wake.wait(timeout):
            self._wake.clear()

    def _closing_done(self) -> bool:
        barrier = self._close_barrier
        return barrier is not None and self._outbox.delivered_through(barrier)

    # ---- queue -> outbox ----

    def _pump(self) -> None:
        queue, outbox, counters = self._queue, self._outbox, self.counters
        if self._close_barrier is not None:
            if queue:
                self._discard_after_close()
            return
        moved = 0
        if queue:
            self._busy_at = time.monotonic()
        while queue and moved < _PUMP_LIMIT and outbox.has_room():
            try:
                item = queue.popleft()
            except IndexError:  # a producer's drop-oldest policy took it first
                break
            moved += 1
            op = item[0]
            try:
                if op == OP_TEXT:
                    counters.dequeued += 1
                    self._add_text(item)
                elif op == OP_EVENT:
                    counters.dequeued += 1
                    self._add_event(item)
                elif op == OP_OPEN:
                    self._open_session(item)
                elif op == OP_END:
                    self._end_session(item[1], item[3])
                elif op == OP_FLUSH:
                    waiter: FlushWaiter = item[1]
                    waiter.barrier = outbox.last_seq
                    self._waiters.append(waiter)
                    self._flush_now = True
                elif op == OP_CLOSE:
                    self._begin_close()
                    self._discard_after_close()
                    return
            except Exception as exc:  # one bad item must not stop delivery of the others
                self._diag.internal("encode", exc)

    def _discard_after_close(self) -> None:
        """Drop (and count) what was reported after the close: the agent is unregistered and
        its sessions are ended; a flush waits for what came before."""
        queue, dropped = self._queue, 0
        while queue:
            try:
                item = queue.popleft()
            except IndexError:
                break
            op = item[0]
            if op == OP_FLUSH:
                waiter: FlushWaiter = item[1]
                waiter.barrier = self._close_barrier if self._close_barrier is not None else -1
                self._waiters.append(waiter)
            elif op != OP_CLOSE:
                dropped += 1
        if dropped:
            self._diag.drop(dropped)
            self._diag.warn(
                "after-close",
                "%d events were reported after close() or the SDK's exit handler; ignored "
                "(counted in stats().dropped)",
                dropped,
            )

    def _add_event(self, item: Item) -> None:
        _, session_id, ts, channel, event_type, fields = item
        event: dict[str, Any] = {
            "channel": channel,
            "event_type": event_type,
            "timestamp": int(ts * 1000),
        }
        if fields:
            event.update(fields)
        self._add(event_message(self._agent.agent_id, event, session_id=session_id))

    def _add_text(self, item: Item) -> None:
        _, session_id, ts, delta, step = item
        event: dict[str, Any] = {
            "channel": "progress",
            "event_type": "text_chunk",
            "timestamp": int(ts * 1000),
            "delta": delta,
        }
        if step is not None:
            event["step"] = step
        self._add(event_message(self._agent.agent_id, event, session_id=session_id))

    def _open_session(self, item: Item) -> None:
        _, session_id, ts, metadata = item
        msg = register_session_message(
            session_id, self._agent.agent_id, created_at=_iso(ts), metadata=metadata
        )
        self._sessions[session_id] = msg
        self._add(dict(msg))

    def _end_session(self, session_id: str, status: str) -> None:
        self._sessions.pop(session_id, None)
        self._add(end_session_message(session_id, self._agent.agent_id, status))

    def _begin_close(self) -> None:
        if self._close_barrier is not None:
            return
        for session_id in list(self._sessions):
            self._end_session(session_id, SessionStatus.INTERRUPTED)
        if not self._agent.forked:
            self._add({"type": "unregister", "agent_id": self._agent.agent_id})
        self._close_barrier = self._outbox.last_seq
        self._flush_now = True

    def _add(self, msg: dict[str, Any]) -> None:
        outbox = self._outbox
        seq = outbox.reserve()
        msg["seq"] = seq
        data = encode(msg)
        # JSON shorter than twice the limit cannot nest past it: most messages skip the check.
        if (
            data is None
            or len(data) > self._opts.max_message_bytes
            or (len(data) > 2 * MAX_MESSAGE_DEPTH + 1 and nests_too_deep(data))
        ):
            data = self._unsendable(msg, data)
            if data is None:
                return
        outbox.push(seq, data)

    def _unsendable(self, msg: dict[str, Any], data: bytes | None) -> bytes | None:
        """Handle a message the Studio would not take (too large, not encodable, too deep):
        a tool call's event goes without its arguments and result (so the call still ends in
        the Studio); anything else is dropped and counted, and a permission request or
        question that cannot be sent resolves at once with its default (`undeliverable`)."""
        limit = self._opts.max_message_bytes
        event = msg.get("event") if msg.get("type") == "event" else None
        if isinstance(event, dict):
            for slim in _without_payload(msg, event, limit):
                fitted = encode(slim)
                if fitted is not None and len(fitted) <= limit and not nests_too_deep(fitted):
                    self._diag.warn(
                        "tool-payload-omitted",
                        "a %s event was too large or not encodable; sent with the tool call's "
                        "arguments or result omitted (limit %d bytes)",
                        event.get("event_type"),
                        limit,
                    )
                    return fitted
        if data is None:
            self.counters.unencodable += 1
            self._diag.warn("unencodable", "an event could not be encoded as JSON; dropped")
        elif len(data) > limit:
            self.counters.oversized += 1
            self._diag.warn(
                "oversized",
                "dropped a %s message of %d bytes (limit %d bytes)",
                msg.get("type"),
                len(data),
                limit,
            )
        elif _unparsable_number(data):
            self.counters.unencodable += 1
            self._diag.warn(
                "unencodable",
                "an event holds a number the Studio cannot read (an integer too large for "
                "a 64-bit float, say); dropped",
            )
        else:
            self.counters.unencodable += 1
            self._diag.warn(
                "unencodable",
                "an event nests deeper than %d levels, which the Studio refuses; dropped",
                MAX_MESSAGE_DEPTH,
            )
        if isinstance(event, dict) and self._control is not None:
            self._request_unsent(event)
        return None

    def _request_unsent(self, event: dict[str, Any]) -> None:
        """A permission request or question was dropped: nobody can answer it, so whoever
        waits for it gets the default now rather than at its timeout."""
        assert self._control is not None
        etype = event.get("event_type")
        ask_id = event.get("ask_id")
        if etype == "permission_required":
            call = event.get("call")
            key = call.get("id") if isinstance(call, dict) else None
            kind = PERMISSION
        elif etype == "ask_user":
            key, kind = event.get("request_id"), QUESTION
        else:
            return
        if isinstance(key, str) and isinstance(ask_id, str):
            try:
                self._control.undeliverable(kind, key, ask_id)
            except Exception as exc:
                self._diag.internal("control", exc)

    # ---- connection ----

    def _connect(self) -> None:
        """Start a connection attempt when one is due; take its connection once it is open."""
        opening = self._opening
        if opening is not None:
            outcome = opening.outcome
            if outcome is not None:
                self._opening = None
                self._opened(outcome)
            return
        opts = self._opts
        now = time.monotonic()
        if now < self._next_attempt:
            return
        timeout = opts.connect_timeout
        if self._close_deadline is not None:
            timeout = min(timeout, self._close_deadline - now)
            if timeout <= 0:
                return
        frame, handshake = self._register_frame, min(opts.handshake_timeout, timeout)
        self._opening = Opening(lambda: self._open(frame, timeout, handshake), self._wake)

    def _open(self, frame: bytes, timeout: float, handshake: float) -> Opened:
        """Connect and register (on the attempt's thread: reads no state the worker changes)."""
        conn = self._transport.connect(target_url(self._settings), self._headers, timeout)
        try:
            last_seq, early = self._handshake(conn, frame, handshake)
        except BaseException:
            conn.close()
            raise
        return Opened(conn, last_seq, early)

    def _opened(self, outcome: Opened) -> None:
        """Take over the connection an attempt opened, or retry after its failure."""
        conn, error = outcome.conn, outcome.error
        if isinstance(error, Refused):
            self._refused(error)
            return
        if conn is None:
            if not isinstance(error, TransportError):  # a transport bug: count it, retry
                self._diag.internal("connect", error or RuntimeError("no connection"))
            self._retry_later(error or RuntimeError("no connection"))
            return
        last_seq = outcome.last_seq
        self._conn = conn
        self.reliable = last_seq is not None
        self._notify_control(self.reliable)
        resent, handled = self._outbox.restart(last_seq or 0)
        self.counters.connects += 1
        self.counters.resent += resent
        self.counters.delivered += handled
        if self._connected_once:
            # The server may have marked our open sessions interrupted when we dropped.
            for msg in self._sessions.values():
                self._add(dict(msg))
        self._connected_once = True
        self._attempt = 0
        self._last_send = 0.0
        self._last_progress = time.monotonic()
        if self._diag.should_log("connected"):
            logger.info(
                "connected to %s as agent %r (%s delivery, %d to resend)",
                self._shown_url,
                self._agent.agent_id,
                "exactly-once" if self.reliable else "at-most-once",
                resent,
            )
        for early in outcome.early:
            self._dispatch(early)

    def _handshake(
        self, conn: Connection, frame: bytes, timeout: float
    ) -> tuple[int | None, list[object]]:
        """Register the agent; return the server's `last_seq` (None without the extension)
        and the other messages that came first, for the worker to handle."""
        conn.send(frame)
        early: list[object] = []
        end = time.monotonic() + timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                self._diag.warn(
                    "no-registered",
                    "the Studio did not confirm registration; sending at-most-once",
                )
                return None, early
            try:
                frame_in = conn.recv(remaining)
            except ConnectionClosed as exc:
                if exc.code == CloseCode.MESSAGE_TOO_BIG:  # our register, the only frame sent
                    raise Refused(
                        "the register frame is over the Studio's frame limit",
                        "message_too_big",
                        invalid=True,
                    ) from exc
                raise
            if frame_in is None:
                continue
            msg = decode_server(frame_in)
            if isinstance(msg, Registered):
                return msg.last_seq, early
            if isinstance(msg, ServerError):
                if msg.code == ErrorCode.RATE_LIMITED:
                    continue  # a notice: the Studio slows the frame down, it still handles it
                # Never at-most-once after a refusal: each event would be refused in turn,
                # and counted delivered once written.
                raise Refused(msg.message, msg.code, invalid=msg.code in _INVALID_REGISTER)
            early.append(msg)

    def _refused(self, exc: Refused) -> None:
        """Keep everything and try again later, loudly: nothing is delivered meanwhile."""
        self.counters.refused += 1
        if exc.invalid and self._register_frame != self._minimal_frame:
            # What the agent reports about itself made the register invalid: register with
            # the id alone, at once, and keep exactly-once delivery.
            self._register_frame = self._minimal_frame
            self._diag.error(
                "register-invalid",
                "the Studio refused to register agent %r as given (%s: %s); registering it "
                "with its id alone (its name, model, status, capabilities and metadata are "
                "left out)",
                self._agent.agent_id,
                exc.code,
                exc,
            )
            self.counters.connect_failures += 1
            return
        self._diag.error(
            "refused",
            "the Studio at %s refused agent %r (%s: %s)%s; nothing is delivered until it "
            "accepts it: events are kept (up to max_queue_size and max_unacked_messages, "
            "then dropped and counted) and the SDK keeps trying in the background",
            self._shown_url,
            self._agent.agent_id,
            exc.code,
            exc,
            "; check the agent key (token=, ASTER_STUDIO_TOKEN)"
            if exc.code in _KEY_REFUSALS
            else "",
        )
        self._retry_later(exc, log=False)

    def _retry_later(self, exc: BaseException, *, log: bool = True) -> None:
        opts = self._opts
        self.counters.connect_failures += 1
        delay = min(opts.backoff_max, opts.backoff_initial * (2 ** min(self._attempt, 30)))
        delay *= random.uniform(0.5, 1.0)
        self._attempt += 1
        self._next_attempt = time.monotonic() + delay
        if not log:
            return
        self._diag.warn(
            "connect-failed",
            "cannot reach the Studio at %s (%s); retrying in the background",
            self._shown_url,
            exc,
        )

    def _lost(self, exc: BaseException) -> None:
        conn = self._conn
        self._conn = None
        self.reliable = None
        self._notify_control(None)
        self.counters.disconnects += 1
        if conn is not None:
            conn.close()
        if isinstance(exc, ConnectionClosed) and exc.code == CloseCode.MESSAGE_TOO_BIG:
            self._diag.warn(
                "too-big",
                "the Studio refused a frame as too big (close code 1009); its frame limit is "
                "below max_batch_bytes=%d: lower max_batch_bytes and max_message_bytes",
                self._opts.max_batch_bytes,
            )
        self._diag.warn("disconnected", "lost the connection to the Studio (%s); reconnecting", exc)
        self._retry_later(exc)

    # ---- I/O on an open connection ----

    def _receive(self, conn: Connection) -> None:
        for _ in range(_RECV_LIMIT):
            frame = conn.recv(0)
            if frame is None:
                return
            self._dispatch(decode_server(frame))

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, Ack):
            count = self._outbox.ack(msg.seq)
            if count:
                self.counters.delivered += count
                self._last_progress = time.monotonic()
        elif isinstance(msg, ServerError):
            self.counters.rejected += 1
            if msg.seq is not None:
                count = self._outbox.reject(msg.seq)
                self.counters.delivered += count
                self._last_progress = time.monotonic()
            self._diag.warn(
                "server-error:" + msg.code,
                "the Studio rejected a message (%s: %s)",
                msg.code,
                msg.message,
            )
        elif isinstance(msg, Control):
            # Console decisions: permissions, answers, tool control (docs/control.md).
            self.counters.control_messages += 1
            if self._control is not None:
                try:
                    self._control.deliver(msg)
                except Exception as exc:  # a bad message must not cost the connection
                    self._diag.internal("control", exc)

    def _notify_control(self, reliable: bool | None) -> None:
        """Tell the control hub a connection opened (reliable or not) or was lost (None)."""
        control = self._control
        if control is None:
            return
        try:
            if reliable is None:
                control.disconnected()
            else:
                control.connected(reliable)
        except Exception as exc:
            self._diag.internal("control", exc)

    def _send(self, conn: Connection) -> None:
        outbox, opts, counters = self._outbox, self._opts, self.counters
        if not outbox.unsent:
            return
        now = time.monotonic()
        due = (
            self._flush_now
            or self._close_barrier is not None
            or outbox.unsent >= opts.max_batch_messages
            or outbox.unsent_bytes >= opts.max_batch_bytes
            or now - self._last_send >= opts.flush_interval
        )
        if not due:
            return
        if not outbox.in_flight:
            self._last_progress = now
        while outbox.unsent:
            if self.reliable:
                parts = outbox.take(opts.max_batch_messages, opts.max_batch_bytes)
                # Counted before the write: one that fails is resent, and counted resent then.
                counters.sent += len(parts)
                counters.frames += 1
                conn.send(parts[0] if len(parts) == 1 else batch_frame(parts))
                # Read acks between frames: replies left unread would stall the server's writes.
                self._receive(conn)
            else:
                # A server without the extensions knows neither `batch` nor `end_session`:
                # one message per frame, and session ends are not sent.
                parts = outbox.take(1, opts.max_batch_bytes)
                counters.sent += 1
                counters.frames += 1
                if not parts[0].startswith(_END_SESSION_PREFIX):
                    conn.send(parts[0])
                outbox.forget_sent()
                counters.delivered += 1
        self._last_send = now
        self._flush_now = False

    def _watch_acks(self) -> None:
        if not self.reliable or not self._outbox.in_flight:
            return
        if time.monotonic() - self._last_progress > self._opts.ack_timeout:
            raise TransportError(f"no acknowledgement for {self._opts.ack_timeout:g} s")

    # ---- bookkeeping ----

    def _resolve_waiters(self) -> None:
        if not self._waiters:
            return
        outbox = self._outbox
        pending: list[FlushWaiter] = []
        for waiter in self._waiters:
            if waiter.abandoned:
                continue
            if outbox.delivered_through(waiter.barrier):
                waiter.ok = True
                waiter.event.set()
            else:
                pending.append(waiter)
        self._waiters = pending

    def _report_drops(self, *, final: bool = False) -> None:
        """Log the events dropped since the last report, by cause, at most once per interval;
        the `final` report at shutdown logs whatever is left, however recent the last one."""
        counters = self.counters
        drops = (self._diag.dropped, counters.oversized, counters.unencodable)
        last = self._reported_drops
        if drops == last:
            return
        now = time.monotonic()
        if now < self._next_report and not final:
            return
        total = sum(drops)
        logger.warning(
            "dropped %d events: %d because the queue was full (%s), %d larger than "
            "max_message_bytes, %d not encodable as JSON; %d dropped in total",
            total - sum(last),
            drops[0] - last[0],
            self._opts.drop_policy,
            drops[1] - last[1],
            drops[2] - last[2],
            total,
        )
        self._reported_drops = drops
        self._next_report = now + self._opts.log_interval

    def _finish(self) -> None:
        try:
            opening, self._opening = self._opening, None
            if opening is not None:
                opening.abandon()
            self.delivered_all = self._closing_done()
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            # Queued flushes and closes are requests, not messages (a copy: producers may
            # still append while we count); what came after the close is dropped, not owed.
            left, late, closed = len(self._outbox), 0, self._close_barrier is not None
            for item in list(self._queue):
                op = item[0]
                if op == OP_CLOSE:
                    closed = True
                elif op < OP_FLUSH:
                    if closed:
                        late += 1
                    else:
                        left += 1
            if late:
                self._diag.drop(late)
            self._report_drops(final=True)
            if left:
                self.counters.undelivered += left
                logger.warning("%d messages were not delivered to the Studio before shutdown", left)
        except Exception as exc:
            self._diag.internal("shutdown", exc)
        finally:
            for waiter in self._waiters:
                waiter.event.set()
            self._waiters = []
            if self._control is not None:
                # Also when the client was dropped without close(): nobody waits past the end.
                with contextlib.suppress(Exception):
                    self._control.close()
            self.done.set()
