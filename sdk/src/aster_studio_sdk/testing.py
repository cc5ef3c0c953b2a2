"""Test helpers: an in-memory Studio that captures what an agent reports, over no network.

Use it in your agent's tests::

    from aster_studio_sdk.testing import InMemoryStudio

    studio = InMemoryStudio()
    client = studio.client(agent_id="writer-1")
    run_my_agent(client)
    client.flush()
    assert studio.text() == "Hello, world"
    assert [e.event_type for e in studio.events][:1] == ["state_changed"]

`InMemoryStudio` implements the protocol and the reliable-delivery extension (producer ids,
`last_seq`, acks, skipping repeated numbers), so it stores each event once like the real server.
Its fault switches (`down`, `cut_every`, `drop_acks`, ...) let the SDK's own tests exercise
reconnects without sockets.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._client import StudioClient
from ._errors import ConnectionClosed, TransportError
from ._transport import Connection
from .protocol import (
    Batch,
    EndSession,
    ErrorCode,
    Event,
    Ping,
    ProtocolError,
    Register,
    RegisterSession,
    Unregister,
    decode,
    dumps,
    error_payload,
    iter_messages,
)

IN_MEMORY_URL = "ws://in-memory.invalid"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the in-memory Studio stored it."""

    agent_id: str
    session_id: str | None
    channel: str
    event_type: str
    event: dict[str, Any]
    seq: int | None = None


@dataclass(slots=True)
class StoredSession:
    """A session as the in-memory Studio knows it."""

    session_id: str
    agent_id: str
    status: str = "active"
    registrations: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


class InMemoryStudio:
    """A Studio in memory: stores agents, sessions and events; thread-safe."""

    def __init__(self, *, legacy: bool = False) -> None:
        self._lock = threading.Lock()
        # legacy: speak only the original document (no last_seq, acks, batch or end_session).
        self.legacy = legacy
        self.reliable = not legacy
        self.events: list[StoredEvent] = []
        self.sessions: dict[str, StoredSession] = {}
        self.agents: dict[str, Register] = {}
        self.offline: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.frames = 0
        self.frame_sizes: list[int] = []
        self.connects = 0
        # Fault switches, for testing the SDK itself.
        self.down = False  # refuse connections
        self.connect_delay = 0.0  # seconds a connection attempt takes
        self.cut_every: int | None = None  # after every N-th frame: store it, then drop the link
        self.drop_acks = False  # store, but never acknowledge
        self.stall_sends = False  # block every send until the switch is cleared
        self._high: dict[str, int] = {}
        self._connections: list[MemoryConnection] = []

    # ---- for agent authors ----

    def client(self, agent_id: str = "test-agent", **kwargs: Any) -> StudioClient:
        """Return an enabled client reporting to this Studio (extra arguments as StudioClient)."""
        kwargs.setdefault("enabled", True)
        kwargs.setdefault("url", IN_MEMORY_URL)
        return StudioClient(agent_id, transport=self.transport(), **kwargs)

    def transport(self) -> MemoryTransport:
        """Return a transport whose connections lead here."""
        return MemoryTransport(self)

    def events_of(self, event_type: str, session_id: str | None = None) -> list[StoredEvent]:
        """Return the stored events of a type (optionally of one session), in order."""
        with self._lock:
            return [
                e
                for e in self.events
                if e.event_type == event_type and (session_id is None or e.session_id == session_id)
            ]

    def text(self, session_id: str | None = None) -> str:
        """Return the streamed text (`text_chunk` deltas) joined, optionally of one session."""
        return "".join(
            str(e.event.get("delta", "")) for e in self.events_of("text_chunk", session_id)
        )

    # ---- fault injection ----

    def disconnect_all(self) -> None:
        """Drop every open connection, as a network failure would."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.break_link()

    # ---- the server side ----

    def _open(self) -> MemoryConnection:
        if self.connect_delay:
            time.sleep(self.connect_delay)
        with self._lock:
            if self.down:
                raise TransportError(f"connection refused by {IN_MEMORY_URL} (down)")
            self.connects += 1
            conn = MemoryConnection(self)
            self._connections.append(conn)
            return conn

    def _receive(self, conn: MemoryConnection, frame: bytes) -> None:
        decoded = decode(frame)
        with self._lock:
            self.frames += 1
            self.frame_sizes.append(len(frame))
            message = decoded.message
            if self.legacy and isinstance(message, (Batch, EndSession)):
                kind = "batch" if isinstance(message, Batch) else "end_session"
                self._reply_error(
                    conn, ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type '{kind}'")
                )
                return
            if isinstance(message, ProtocolError):
                self._reply_error(conn, message)
                return
            acked = False
            for index, item in enumerate(iter_messages(message)):
                if isinstance(item, ProtocolError):
                    item_error = ProtocolError(item.code, item.message, item.field, item.seq, index)
                    self._reply_error(conn, item_error)
                    acked = acked or self._advance(conn, item.seq)
                    continue
                if isinstance(item, Register):
                    self._register(conn, item)
                    continue
                if item.seq is not None and conn.producer is not None and self.reliable:
                    if item.seq <= self._high.get(conn.producer, 0):
                        continue  # already stored: exactly once
                    self._high[conn.producer] = item.seq
                    acked = True
                self._apply(item)
            if acked and self.reliable and not self.drop_acks and conn.producer is not None:
                conn.push({"type": "ack", "seq": self._high[conn.producer]})
            cut = self.cut_every is not None and self.frames % self.cut_every == 0
        if cut:
            conn.break_link()

    def _advance(self, conn: MemoryConnection, seq: int | None) -> bool:
        if seq is None or conn.producer is None or not self.reliable:
            return False
        if seq > self._high.get(conn.producer, 0):
            self._high[conn.producer] = seq
        return True

    def _register(self, conn: MemoryConnection, msg: Register) -> None:
        self.agents[msg.agent_id] = msg
        self.offline.discard(msg.agent_id)
        reply: dict[str, Any] = {"type": "registered", "agent_id": msg.agent_id}
        if self.reliable and msg.producer_id is not None:
            conn.producer = msg.producer_id
            reply["last_seq"] = self._high.get(msg.producer_id, 0)
        conn.push(reply)

    def _apply(self, msg: RegisterSession | Event | Ping | Unregister | EndSession) -> None:
        if isinstance(msg, Event):
            self.events.append(
                StoredEvent(
                    msg.agent_id,
                    msg.session_id,
                    msg.channel.value,
                    msg.event_type,
                    msg.event,
                    msg.seq,
                )
            )
        elif isinstance(msg, RegisterSession):
            session = self.sessions.get(msg.session_id)
            if session is None:
                session = StoredSession(msg.session_id, msg.agent_id, metadata=dict(msg.metadata))
                self.sessions[msg.session_id] = session
            session.status = "active"
            session.registrations += 1
        elif isinstance(msg, EndSession):
            ended = self.sessions.get(msg.session_id)
            if ended is not None:
                ended.status = msg.status
        elif isinstance(msg, Unregister):
            self.offline.add(msg.agent_id)

    def _reply_error(self, conn: MemoryConnection, error: ProtocolError) -> None:
        body = error_payload(error)
        self.errors.append(body)
        conn.push({"type": "error", **body})


class MemoryConnection:
    """One in-memory connection; the worker thread sends and receives on it."""

    def __init__(self, studio: InMemoryStudio) -> None:
        self._studio = studio
        self._cond = threading.Condition()
        self._inbox: deque[bytes] = deque()
        self._open = True
        self.producer: str | None = None

    def push(self, reply: Mapping[str, Any]) -> None:
        """Queue a reply for the client."""
        with self._cond:
            self._inbox.append(dumps(dict(reply)))
            self._cond.notify_all()

    def break_link(self) -> None:
        """Fail the connection as a network error would."""
        with self._cond:
            self._open = False
            self._cond.notify_all()

    def send(self, frame: bytes) -> None:
        while self._studio.stall_sends and self._open:
            time.sleep(0.001)
        if not self._open:
            raise ConnectionClosed("in-memory connection closed")
        self._studio._receive(self, frame)

    def recv(self, timeout: float) -> str | bytes | None:
        with self._cond:
            if not self._inbox and self._open and timeout > 0:
                self._cond.wait(timeout)
            if self._inbox:
                return self._inbox.popleft()
            if not self._open:
                raise ConnectionClosed("in-memory connection closed")
            return None

    def close(self) -> None:
        self.break_link()

    def abort(self) -> None:
        self.break_link()


class MemoryTransport:
    """A `Transport` whose connections lead to an `InMemoryStudio`."""

    def __init__(self, studio: InMemoryStudio) -> None:
        self._studio = studio

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        self.last_headers = dict(headers)
        return self._studio._open()


__all__ = ["InMemoryStudio", "MemoryConnection", "MemoryTransport", "StoredEvent", "StoredSession"]
