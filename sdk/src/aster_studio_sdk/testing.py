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
Its fault switches (`down`, `cut_every`, `drop_acks`, `forbidden`, ...) let the SDK's own tests
exercise reconnects and refusals without sockets.

It also plays the person in the Studio (docs/control.md): it records `permission_required` and
`ask_user` as `requests`, and a test decides them, by hand or by a standing policy::

    studio.decide_permissions("allow")                  # or "deny", or a function of the call
    studio.answer_questions({"Which file?": "a.txt"})   # or a function of the questions
    request = studio.wait_for_request("permission")     # an agent running in another thread
    studio.deny(request.key, note="not today")
    studio.control(call_id, "cancel")                   # pause / resume / cancel a running tool
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
from .protocol.answers import AnswerError, check_bounds, keyed_answers, question_texts

IN_MEMORY_URL = "ws://in-memory.invalid"

log = logging.getLogger(__name__)


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


PERMISSION, QUESTION, TOOL_CONTROL = "permission", "question", "tool_control"
_ACKS = {
    "permission_decided": PERMISSION,
    "user_answer": QUESTION,
    "tool_control_response": TOOL_CONTROL,
}

PermissionPolicy = Callable[[dict[str, Any]], str | None]
AnswerPolicy = Callable[[list[dict[str, Any]]], Mapping[str, Any] | None]


@dataclass(slots=True)
class MemoryRequest:
    """A request an agent made of a person (or a tool control sent to it), and its progress."""

    id: str
    kind: str  # permission, question or tool_control
    agent_id: str
    session_id: str | None
    key: str  # the call id (permission, tool_control) or the agent's request id (question)
    request: dict[str, Any]  # the call snapshot, {"questions": [...]}, or {"action": ...}
    status: str = "pending"  # pending, decided, expired
    response: dict[str, Any] | None = None
    decided_by: str | None = None
    delivered: bool = False
    acknowledgement: dict[str, Any] | None = None  # the agent's reply event
    expires_at: float | None = None  # time.monotonic() deadline

    @property
    def stage(self) -> str:
        """Return pending, decided, delivered, acknowledged or expired (as the Studio does)."""
        if self.status == "expired":
            return "expired"
        if self.acknowledgement is not None:
            return "acknowledged"
        if self.delivered:
            return "delivered"
        return self.status


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
        # Agent ids refused as a key scoped to other agents would be: `register` and every
        # message naming one get a `forbidden_agent` error and are not applied.
        self.forbidden: set[str] = set()
        self._high: dict[str, int] = {}
        self._connections: list[MemoryConnection] = []
        # Steering: requests, who can receive control messages, standing policies.
        self.requests: list[MemoryRequest] = []
        self._changed = threading.Condition(self._lock)
        self._control_conns: dict[str, MemoryConnection] = {}
        self._ids = itertools.count(1)
        self._permission_policy: PermissionPolicy | None = None
        self._answer_policy: AnswerPolicy | None = None
        self._to_decide: list[MemoryRequest] = []

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

    # ---- playing the person in the Studio ----

    def decide_permissions(self, policy: str | PermissionPolicy | None) -> None:
        """Decide every permission request as it arrives: "allow", "deny", or `policy(call)`.

        A function may return None to leave a request pending; None stops deciding.
        """
        if isinstance(policy, str):
            decision = policy
            self._permission_policy = lambda _call: decision
        else:
            self._permission_policy = policy

    def answer_questions(self, policy: Mapping[str, Any] | AnswerPolicy | None) -> None:
        """Answer every `ask_user` as it arrives: fixed answers, or `policy(questions)`."""
        if policy is None or callable(policy):
            self._answer_policy = policy
        else:
            answers = dict(policy)
            # Each ask is answered the questions it asks: a fixed set may cover several asks.
            self._answer_policy = lambda questions: {
                text: answers[text] for text in question_texts(questions) or () if text in answers
            }

    def approve(
        self, call_id: str | None = None, *, note: str | None = None, by: str = "test"
    ) -> MemoryRequest:
        """Allow a pending permission request (the oldest one when no call id is given)."""
        return self._decide(PERMISSION, call_id, {"decision": "allow", "note": note}, by)

    def deny(
        self, call_id: str | None = None, *, note: str | None = None, by: str = "test"
    ) -> MemoryRequest:
        """Deny a pending permission request (the oldest one when no call id is given)."""
        return self._decide(PERMISSION, call_id, {"decision": "deny", "note": note}, by)

    def answer(
        self,
        answers: Mapping[str, Any] | Sequence[Any],
        request_id: str | None = None,
        *,
        by: str = "test",
    ) -> MemoryRequest:
        """Answer a pending question request (the oldest one when no id is given).

        The answers are checked as the Studio checks them: one for every question asked (keyed
        by its text, or a list in order), and nothing else; AnswerError (a ValueError) if not.
        """
        given = dict(answers) if isinstance(answers, Mapping) else list(answers)
        check_bounds(given)
        return self._decide(QUESTION, request_id, {"answers": given}, by)

    def control(
        self,
        call_id: str,
        action: str,
        *,
        note: str | None = None,
        agent_id: str | None = None,
        by: str = "test",
    ) -> MemoryRequest:
        """Send pause, resume or cancel for a running tool call; the agent must be connected."""
        if action not in ("pause", "resume", "cancel"):
            raise ValueError("action must be pause, resume or cancel")
        with self._lock:
            if agent_id is None:
                if len(self._control_conns) != 1:
                    raise LookupError("pass agent_id: not exactly one agent is connected")
                agent_id = next(iter(self._control_conns))
            conn = self._control_conns.get(agent_id)
            if conn is None or not conn.is_open:
                raise LookupError(f"agent {agent_id!r} is not connected with control enabled")
            body: dict[str, Any] = {"call_id": call_id, "action": action}
            if note:
                body["note"] = note
            request = MemoryRequest(
                f"r_{next(self._ids)}",
                TOOL_CONTROL,
                agent_id,
                None,
                call_id,
                body,
                status="decided",
                response=body,
                decided_by=by,
            )
            self.requests.append(request)
            self._deliver(request)
            self._changed.notify_all()
            return request

    def pending(self, kind: str | None = None) -> list[MemoryRequest]:
        """Return the requests still waiting for a person, oldest first."""
        with self._lock:
            self._expire()
            return [r for r in self.requests if r.status == "pending" and kind in (None, r.kind)]

    def wait_for_request(
        self, kind: str | None = None, *, key: str | None = None, timeout: float = 5.0
    ) -> MemoryRequest:
        """Wait until an agent asks (a pending request of `kind`, `key`); raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._expire()
                for r in self.requests:
                    if r.status == "pending" and kind in (None, r.kind) and key in (None, r.key):
                        return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no pending {kind or ''} request within {timeout} s")
                self._changed.wait(remaining)

    def wait_for_acknowledgement(
        self, request: MemoryRequest, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until the agent acknowledged a request; return its reply event."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while request.acknowledgement is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"request {request.id} not acknowledged within {timeout} s")
                self._changed.wait(remaining)
            return request.acknowledgement

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
                agent_id = getattr(item, "agent_id", None)
                if agent_id is not None and agent_id in self.forbidden:
                    refusal = ProtocolError(
                        ErrorCode.FORBIDDEN_AGENT,
                        f"this agent key may not write for agent '{agent_id}'",
                        "agent_id",
                        item.seq,
                        index,
                    )
                    self._reply_error(conn, refusal)
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
            to_decide, self._to_decide = self._to_decide, []
        for request in to_decide:  # policies are the test's code: run them outside the lock
            self._apply_policy(request)
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
        if not self.legacy and (msg.producer_id is not None or "control" in msg.capabilities):
            self._control_conns[msg.agent_id] = conn
            # Decisions made while the agent was away (tool controls were for the old link).
            self._expire()
            for request in self.requests:
                if (
                    request.agent_id == msg.agent_id
                    and request.status == "decided"
                    and request.acknowledgement is None
                    and request.kind != TOOL_CONTROL
                ):
                    self._deliver(request)

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
            if msg.session_id and msg.session_id not in self.sessions:
                # As the Studio does: an event naming a session nobody registered makes it.
                self.sessions[msg.session_id] = StoredSession(msg.session_id, msg.agent_id)
            if msg.event_type in ("permission_required", "ask_user") or msg.event_type in _ACKS:
                self._observe(msg)
                self._changed.notify_all()
        elif isinstance(msg, RegisterSession):
            session = self.sessions.get(msg.session_id)
            if session is None:
                session = StoredSession(msg.session_id, msg.agent_id, metadata=dict(msg.metadata))
                self.sessions[msg.session_id] = session
            elif not session.registrations:  # made by an event: the registration completes it
                session.metadata = dict(msg.metadata)
            session.status = "active"
            session.registrations += 1
        elif isinstance(msg, EndSession):
            ended = self.sessions.get(msg.session_id)
            if ended is not None:
                ended.status = msg.status
        elif isinstance(msg, Unregister):
            self.offline.add(msg.agent_id)

    # ---- steering, under the lock ----

    def _observe(self, msg: Event) -> None:
        body = msg.event
        if msg.event_type in ("permission_required", "ask_user"):
            if msg.event_type == "permission_required":
                raw = body.get("call")
                call: dict[str, Any] = raw if isinstance(raw, dict) else {}
                kind, key, request = PERMISSION, call.get("id"), dict(call)
            else:
                questions = body.get("questions") or []
                kind, key = QUESTION, body.get("request_id")
                request = {"request_id": key, "questions": questions}
            ask_id = body.get("ask_id")
            if isinstance(ask_id, str):
                request["ask_id"] = ask_id
            if not isinstance(key, str):
                return
            found = self._find(msg.agent_id, kind, key, open_only=True)
            if found is not None and found.request.get("ask_id") == request.get("ask_id"):
                return  # the same ask again
            if found is not None:
                found.status = "expired"  # superseded: its answer is not the new ask's
            timeout = body.get("timeout_ms")
            expires = (
                time.monotonic() + timeout / 1000
                if isinstance(timeout, (int, float)) and timeout > 0
                else None
            )
            record = MemoryRequest(
                f"r_{next(self._ids)}",
                kind,
                msg.agent_id,
                msg.session_id,
                key,
                request,
                expires_at=expires,
            )
            self.requests.append(record)
            self._to_decide.append(record)
            return
        kind = _ACKS[msg.event_type]
        if kind == TOOL_CONTROL:
            found = self._answered_control(msg.agent_id, body)
        else:
            key = body.get("call_id") if kind != QUESTION else body.get("request_id")
            found = self._find(msg.agent_id, kind, key, open_only=False) if key else None
        if found is None:
            return
        if found.status == "pending":  # the agent decided by itself
            found.status = "decided"
            found.decided_by = f"agent:{msg.agent_id}"
        found.acknowledgement = dict(body)

    def _answered_control(self, agent_id: str, body: dict[str, Any]) -> MemoryRequest | None:
        """The tool control a response answers: the one its `request_id` names, else the
        newest unanswered one for the same call and action (as the Studio matches them)."""
        request_id = body.get("request_id")
        for request in reversed(self.requests):
            if (request.agent_id, request.kind) != (agent_id, TOOL_CONTROL):
                continue
            if request_id is not None:
                if request.id == request_id:
                    return request
            elif (
                request.acknowledgement is None
                and request.key == body.get("call_id")
                and request.request.get("action") == body.get("action")
            ):
                return request
        return None

    def _find(self, agent_id: str, kind: str, key: Any, *, open_only: bool) -> MemoryRequest | None:
        for request in reversed(self.requests):
            if (request.agent_id, request.kind, request.key) != (agent_id, kind, key):
                continue
            if open_only and (request.status == "expired" or request.acknowledgement is not None):
                continue
            return request
        return None

    def _expire(self) -> None:
        now = time.monotonic()
        for request in self.requests:
            if (
                request.expires_at is not None
                and now >= request.expires_at
                and (
                    request.status == "pending"
                    or (request.status == "decided" and not request.delivered)
                )
            ):
                request.status = "expired"

    def _decide(
        self, kind: str, key: str | None, response: dict[str, Any], by: str
    ) -> MemoryRequest:
        with self._lock:
            self._expire()
            candidates = [r for r in self.requests if r.kind == kind and key in (None, r.key)]
            request = next((r for r in candidates if r.status == "pending"), None)
            if request is None:
                last = candidates[-1] if candidates else None
                state = last.status if last is not None else "missing"
                raise LookupError(f"no pending {kind} request {key or ''} ({state})")
            if kind == QUESTION:
                questions = request.request.get("questions")
                response = {"answers": keyed_answers(questions, response["answers"])}
            request.status = "decided"
            request.response = {k: v for k, v in response.items() if v is not None}
            request.decided_by = by
            self._deliver(request)
            self._changed.notify_all()
            return request

    def _deliver(self, request: MemoryRequest) -> None:
        conn = self._control_conns.get(request.agent_id)
        if conn is None or not conn.is_open:
            return  # sent when the agent registers again
        response = request.response or {}
        message: dict[str, Any]
        if request.kind == PERMISSION:
            message = {
                "event_type": "permission_decided",
                "request_id": request.id,
                "call_id": request.key,
                "decision": response.get("decision"),
                "decided_by": request.decided_by,
            }
            if response.get("note"):
                message["note"] = response["note"]
        elif request.kind == QUESTION:
            message = {
                "event_type": "user_answer",
                "request_id": request.key,
                "answers": response.get("answers"),
                "decided_by": request.decided_by,
            }
        else:
            message = {"event_type": "tool_control", "request_id": request.id, **response}
        if request.kind in (PERMISSION, QUESTION) and "ask_id" in request.request:
            message["ask_id"] = request.request["ask_id"]
        conn.push({"type": "control", **message})
        request.delivered = True

    def _apply_policy(self, request: MemoryRequest) -> None:
        try:
            if request.kind == PERMISSION and self._permission_policy is not None:
                decision = self._permission_policy(request.request)
                if decision is not None:
                    self._decide(PERMISSION, request.key, {"decision": decision}, "policy")
            elif request.kind == QUESTION and self._answer_policy is not None:
                questions: Sequence[dict[str, Any]] = request.request.get("questions") or []
                answers = self._answer_policy(list(questions))
                if answers is not None:
                    self._decide(QUESTION, request.key, {"answers": dict(answers)}, "policy")
        except LookupError:
            pass  # decided meanwhile (by hand, or expired)
        except AnswerError as exc:  # left pending, as the Studio would refuse them
            log.warning("the answer policy's answers to %s were refused: %s", request.key, exc)

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

    @property
    def is_open(self) -> bool:
        """Return whether the link still works."""
        return self._open

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


__all__ = [
    "InMemoryStudio",
    "MemoryConnection",
    "MemoryRequest",
    "MemoryTransport",
    "StoredEvent",
    "StoredSession",
]
