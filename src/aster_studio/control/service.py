"""Requests agents make of people, the answers, and their delivery back (docs/control.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from aster_studio_sdk.protocol import MessageType, parse_timestamp_ms, replace_surrogates
from aster_studio_sdk.protocol.answers import AnswerError, check_bounds, keyed_answers

from .. import store as ops
from ..errors import BadRequest, NotFound, StudioError
from ..ingest.registry import REMOTE, LiveAgent
from ..ingest.service import Clock, IngestService
from ..live.bus import LiveBus
from ..models import RequestRecord, StoredEvent, iso_ms
from ..store import WriteOp

log = logging.getLogger(__name__)

PERMISSION, QUESTION, TOOL_CONTROL = "permission", "question", "tool_control"
PENDING, DECIDED, EXPIRED = "pending", "decided", "expired"
TOOL_ACTIONS = ("pause", "resume", "cancel")
WATCHED_TYPES = frozenset(
    {
        "permission_required",
        "ask_user",
        "permission_decided",
        "user_answer",
        "tool_control_response",
    }
)
MAX_NOTE = 4_000
MAX_ACTOR = 256
# Events between two marks of what is observed (`MarkObserved`) when none asks for anything:
# one small write per this many, and at most this many events scanned at start.
MARK_EVERY = 10_000
# Tool controls closed because a newer one for the same call was sent before the agent
# answered: remembered (this many, in memory) so the agent's late response still reaches them.
SUPERSEDED_KEPT = 1_024


class Conflict(StudioError):
    """The request was already decided, or the agent cannot be reached (REST 409)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class ControlPeers(Protocol):
    """The other Studios of a cluster, as the control service asks them (live/peers.py)."""

    async def forward(self, op: str, args: dict[str, Any]) -> RequestRecord | None:
        """Have the Studio that holds what `op` acts on do it: its result, or None if no
        Studio took it (none holds it: decide here, as if alone). With `lead` in `args`,
        the Studio that `leads()` does it."""
        ...

    def leads(self) -> bool:
        """Whether this Studio acts for the cluster on the requests of agents connected to
        none of its Studios: one Studio decides and expires those, so that two decisions
        taken at once on two Studios cannot both stand."""
        ...


class Expired(StudioError):
    """The request's deadline passed before a decision (REST 410)."""


MAX_TIMEOUT_MS = 365 * 86_400_000


def _str(value: Any) -> str | None:
    """An id as a string: numbers are ids too (`"call": {"id": 7}`), as the protocol reads
    agent and session ids; they went unrecognised, and the agent waited for ever."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def is_closed(record: RequestRecord) -> bool:
    """Whether a request is done with: expired, or its decision acknowledged by the agent
    (the service keeps the others open, in memory)."""
    return record.status == EXPIRED or record.acknowledged_at is not None


def stage(record: RequestRecord) -> str:
    """Where a request is: pending, decided, delivered, acknowledged or expired."""
    if record.status == EXPIRED:
        return EXPIRED
    if record.acknowledged_at is not None:
        return "acknowledged"
    if record.delivered_at is not None:
        return "delivered"
    return record.status


def view(record: RequestRecord) -> dict[str, Any]:
    """Return the RequestView of the REST API and the live stream."""
    return {
        "id": record.id,
        "kind": record.kind,
        "agent_id": record.agent_id,
        "session_id": record.session_id,
        "key": record.key,
        "status": record.status,
        "stage": stage(record),
        "created_at": iso_ms(record.created_at),
        "expires_at": iso_ms(record.expires_at),
        "request": record.request,
        "response": record.response,
        "decided_by": record.decided_by,
        "decided_at": iso_ms(record.decided_at),
        "delivered_at": iso_ms(record.delivered_at),
        "acknowledged_at": iso_ms(record.acknowledged_at),
        "agent_response": record.agent_response,
        "event_cursor": record.event_cursor,
    }


class ControlService:
    """Track open requests in memory (the store keeps every one) and deliver decisions.

    All state changes happen on the event loop, so the first decision to arrive wins without
    locks; the write of that decision goes through the same pipeline as events.
    """

    def __init__(self, ingest: IngestService, bus: LiveBus, clock: Clock) -> None:
        self.ingest = ingest
        self.bus = bus
        self.clock = clock
        self.open: dict[str, RequestRecord] = {}
        # Requests closed (expired, superseded, acknowledged) whose write has not committed
        # yet: the store still holds their previous state, which reads must not show.
        self._unwritten: dict[str, RequestRecord] = {}
        self._superseded: OrderedDict[str, RequestRecord] = OrderedDict()
        self._marked = 0  # the last event id `observe` marked as observed
        self._request_key = b""  # this database's key for request ids (`load`)
        # A Studio of a cluster: the others, which hold the requests of the agents connected
        # to them and take the decisions on those (live/peers.py); and the hook that tells
        # them of each request's view as it changes here.
        self.peers: ControlPeers | None = None
        self.on_saved: Callable[[RequestRecord], None] | None = None

    def load(self, records: list[RequestRecord], request_key: bytes = b"") -> None:
        self.open = {r.id: r for r in records}
        self._request_key = request_key

    def recover(self, events: list[StoredEvent]) -> list[WriteOp]:
        """Apply the stored events whose effects a crash may have lost; return their writes.

        At start, after `load`, with the store's `unobserved_events`: a request is written
        after its event commits, so a crash in between left the event stored (and acked to
        a reliable client) without its request. Replayed in order, each event makes what it
        would have made then, at its own times (deadlines count from when the agent asked);
        one whose effect was written finds its request open and changes nothing.
        """
        writes: list[WriteOp] = []
        for event in events:
            self._apply_event(event, writes, event.ts)
        if writes:
            log.warning(
                "rebuilt %d control request changes that an earlier run stored the events of "
                "but stopped before writing",
                sum(isinstance(w, ops.SaveRequest) for w in writes),
            )
        if events:
            writes.append(ops.MarkObserved(events[-1].id))
        self._unwritten.clear()  # the caller writes these before anything reads them
        return writes

    @property
    def pending_count(self) -> int:
        return sum(1 for r in self.open.values() if r.status == PENDING)

    # ---- changes ----

    def _save(
        self,
        record: RequestRecord,
        writes: list[WriteOp],
        action: str | None = None,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RequestRecord:
        if is_closed(record):
            self.open.pop(record.id, None)
            self._unwritten[record.id] = record
        else:
            self.open[record.id] = record
            self._unwritten.pop(record.id, None)
        writes.append(ops.SaveRequest(record))
        if action is not None:
            writes.append(
                ops.AddAudit(
                    self.clock(),
                    actor or "studio",
                    action,
                    record.id,
                    record.agent_id,
                    detail or {},
                )
            )
        self.bus.changed("request", view(record))
        if self.on_saved is not None:
            self.on_saved(record)
        return record

    def saved_elsewhere(self, record: RequestRecord) -> None:
        """Another Studio of the cluster saved a request: keep the same copy of it here (every
        Studio holds every open request: its consoles list them, and the agent may come
        back here for a decision made while it was away)."""
        if is_closed(record):
            self.open.pop(record.id, None)
        else:
            self.open[record.id] = record
        self.bus.changed("request", view(record))
        if record.status == DECIDED and record.delivered_at is None:
            # Decided on a Studio that took the agent for one connected nowhere (its presence
            # had not reached that one yet): delivered here, if it is connected here.
            agent = self.ingest.registry.agents.get(record.agent_id)
            if agent is not None and agent.connection is not None and agent.connection > 0:
                writes: list[WriteOp] = []
                self._deliver(record, writes)
                self._commit(writes)

    async def _forwarded(
        self, op: str, request_id: str, args: dict[str, Any]
    ) -> RequestRecord | None:
        """In a cluster: a decision on a request whose agent is connected to another Studio
        is taken there, which delivers it; on one of an agent connected to none, by the
        Studio that leads. None: take it here."""
        if self.peers is None:
            return None
        record = self.open.get(request_id)
        if record is None:
            stored = await self._run(self.ingest.store.get_request, request_id)
            if stored is None or is_closed(stored):
                return None
            record = self.open.setdefault(request_id, stored)  # a copy missed: the store's
        agent = self.ingest.registry.agents.get(record.agent_id)
        if self._held_here(agent):
            return None
        args = {**args, "agent_id": record.agent_id}
        if agent is None or agent.connection != REMOTE:
            args["lead"] = True
        return await self.peers.forward(op, args)

    def _held_here(self, agent: LiveAgent | None) -> bool:
        """Whether this Studio decides and expires the requests of `agent`: alone, always;
        in a cluster, those of an agent connected here, and of one connected to no Studio
        when this one leads (`ControlPeers.leads`)."""
        if agent is not None and agent.connection is not None:
            return agent.connection != REMOTE
        return self.peers is None or self.peers.leads()

    def _commit(self, writes: list[WriteOp]) -> None:
        pipeline = self.ingest.pipeline
        closed = [
            w.record
            for w in writes
            if isinstance(w, ops.SaveRequest) and self._unwritten.get(w.record.id) is w.record
        ]
        if pipeline is None:
            for record in closed:  # nothing will be written: the store's state stays
                del self._unwritten[record.id]
            return
        if writes:
            pipeline.submit(writes)
        if closed:
            pipeline.when_durable(lambda: self._written(closed))

    def _written(self, records: list[RequestRecord]) -> None:
        """The store holds these closed requests now: reads may take them from it."""
        for record in records:
            if self._unwritten.get(record.id) is record:
                del self._unwritten[record.id]

    def latest(self, request_id: str) -> RequestRecord | None:
        """The request as it is now if the store may not hold that yet (it is open, or its
        closing is still queued for the writer, though the live stream has shown it)."""
        return self.open.get(request_id) or self._unwritten.get(request_id)

    def current(self, record: RequestRecord) -> RequestRecord:
        """`record`, read from the store, as it is now (see `latest`)."""
        return self.latest(record.id) or record

    def unstored(self) -> list[RequestRecord]:
        """The requests whose current state the store may not hold yet: open ones, and
        closed ones whose write is still queued."""
        return [*self.open.values(), *self._unwritten.values()]

    def _find(self, agent_id: str, kind: str, key: str) -> RequestRecord | None:
        for record in self.open.values():
            if record.agent_id == agent_id and record.kind == kind and record.key == key:
                return record
        return None

    def _same_ask(
        self, event: StoredEvent, kind: str, key: str, request: dict[str, Any]
    ) -> RequestRecord | None:
        """The open request this ask repeats, if any: the same `ask_id`, or (an agent that
        sends none) the same session and request while still pending. Anything else is a new
        ask, which must never inherit a decision made for another one."""
        ask_id = request.get("ask_id")
        for record in self.open.values():
            if (record.agent_id, record.kind, record.key) != (event.agent_id, kind, key):
                continue
            if ask_id is not None or record.request.get("ask_id") is not None:
                if record.request.get("ask_id") == ask_id:
                    return record
            elif (
                record.status == PENDING
                and record.session_id == event.session_id
                and record.request == request
            ):
                return record
        return None

    def _supersede(self, new: RequestRecord, writes: list[WriteOp]) -> None:
        """Close the older open requests for the same key: their answer is not this one's."""
        for record in list(self.open.values()):
            if record.id != new.id and (record.agent_id, record.kind, record.key) == (
                new.agent_id,
                new.kind,
                new.key,
            ):
                closed = dataclasses.replace(record, status=EXPIRED)
                self._save(closed, writes, "superseded", "studio", {"by": new.id})
                if closed.kind == TOOL_CONTROL and closed.acknowledged_at is None:
                    self._superseded[closed.id] = closed
                    while len(self._superseded) > SUPERSEDED_KEPT:
                        self._superseded.popitem(last=False)

    def _get_open(self, request_id: str) -> RequestRecord:
        record = self.open.get(request_id)
        if record is None:
            raise NotFound(f"no open request {request_id!r}")
        return record

    # ---- what agents send ----

    def observe(self, events: list[StoredEvent]) -> None:
        """Runs after each commit: create, acknowledge or answer requests from agent events.

        Their writes carry a mark of the events observed (`MarkObserved`), which a commit
        without any carries only every MARK_EVERY events: what a crash loses past the mark,
        `recover` replays at the next start.
        """
        writes: list[WriteOp] = []
        now = 0
        for event in events:
            if event.event_type in WATCHED_TYPES:
                now = now or self.clock()
                self._apply_event(event, writes, now)
        if events:
            last = events[-1].id
            if writes or last - self._marked >= MARK_EVERY:
                # Behind this commit's requests in the queue: durable only once they are.
                writes.append(ops.MarkObserved(last))
                self._marked = last
        self._commit(writes)

    def _apply_event(self, event: StoredEvent, writes: list[WriteOp], now: int) -> None:
        try:
            body = orjson.loads(event.payload)
            self._observe(event, body, writes, now)
        except Exception:  # one odd event must not stop the rest
            log.exception("could not apply control event %s", event.id)

    def _observe(
        self, event: StoredEvent, body: dict[str, Any], writes: list[WriteOp], now: int
    ) -> None:
        kind = event.event_type
        if kind in ("permission_required", "ask_user"):
            raw_call = body.get("call")
            call: dict[str, Any] = raw_call if isinstance(raw_call, dict) else {}
            if kind == "permission_required":
                req_kind, key = PERMISSION, _str(call.get("id")) or _str(body.get("call_id"))
                request: dict[str, Any] = call or {"call_id": key}
            else:
                req_kind, key = QUESTION, _str(body.get("request_id"))
                request = {"request_id": key, "questions": body.get("questions") or []}
            ask_id = _str(body.get("ask_id"))
            if ask_id is not None:
                request = {**request, "ask_id": ask_id}
            if key is None or self._same_ask(event, req_kind, key, request) is not None:
                return
            record = RequestRecord(
                # Named by its event, so that a request rebuilt after a crash (`recover`) has
                # the id the console was shown, through a keyed hash: a cursor in it told an
                # agent how many events the others had sent.
                id="r_" + hmac.new(self._request_key, b"%d" % event.id, "sha256").hexdigest()[:12],
                kind=req_kind,
                agent_id=event.agent_id,
                session_id=event.session_id,
                key=key,
                status=PENDING,
                created_at=event.ts,
                expires_at=self._deadline(body, event),
                request=request,
                event_cursor=event.id,
            )
            self._supersede(record, writes)
            self._save(record, writes, "requested", f"agent:{event.agent_id}", {"key": key})
            return
        if kind == "tool_control_response":
            found = self._answered_control(event.agent_id, body)
            if found is not None:
                # Answered after all: a superseded control is no longer closed unanswered.
                if self._superseded.pop(found.id, None) is not None:
                    found = dataclasses.replace(found, status=DECIDED)
                record = dataclasses.replace(found, acknowledged_at=now, agent_response=body)
                self._save(
                    record,
                    writes,
                    "acknowledged",
                    f"agent:{event.agent_id}",
                    {"event_cursor": event.id},
                )
            return
        key = _str(body.get("call_id")) or _str(body.get("request_id"))
        if key is None:
            return
        req_kind = PERMISSION if kind == "permission_decided" else QUESTION
        found = self._find(event.agent_id, req_kind, key)
        ask_id = _str(body.get("ask_id"))
        if found is None or ask_id not in (None, found.request.get("ask_id")):
            return  # an acknowledgement of another ask (an earlier run's) for the same key
        record = found
        actor = f"agent:{event.agent_id}"
        if record.status == PENDING:
            # The agent decided on its own (a local user, its own timeout): record that.
            response = (
                {"decision": body.get("decision")}
                if req_kind == PERMISSION
                else {"answers": body.get("answers")}
            )
            record = dataclasses.replace(
                record, status=DECIDED, response=response, decided_by=actor, decided_at=now
            )
        record = dataclasses.replace(record, acknowledged_at=now, agent_response=body)
        self._save(record, writes, "acknowledged", actor, {"event_cursor": event.id})

    def _answered_control(self, agent_id: str, body: dict[str, Any]) -> RequestRecord | None:
        """The tool control a `tool_control_response` answers, open or superseded.

        The one its `request_id` names (the SDK sends it); without one (older agents), the
        newest for the same call and action. By call alone, a late answer to an earlier
        control (a pause refused just as a cancel was sent) was credited to the newer one.
        """
        candidates = [*self.open.values(), *self._superseded.values()]
        request_id = _str(body.get("request_id"))
        if request_id is not None:
            match = [r for r in candidates if r.id == request_id]
        else:
            call_id, action = _str(body.get("call_id")), body.get("action")
            match = [
                r for r in candidates if r.key == call_id and r.request.get("action") == action
            ]
        match = [
            r
            for r in match
            if r.kind == TOOL_CONTROL and r.agent_id == agent_id and r.acknowledged_at is None
        ]
        still_open = [r for r in match if r.status != EXPIRED]
        newest = still_open or match  # an open one before a superseded one
        return newest[-1] if newest else None

    @staticmethod
    def _deadline(body: dict[str, Any], event: StoredEvent) -> int | None:
        """When the agent stops waiting: `timeout_ms` from when it asked, or `expires_at`.

        "When it asked" is the event's own timestamp if it is plausible (not in the future,
        not older than the timeout): an event stored late, after a reconnect, must not stay
        pending longer than the agent waits for it.
        """
        timeout = body.get("timeout_ms")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            # Past a year is no deadline a person keeps, and past 64 bits none the store can.
            timeout = min(timeout, MAX_TIMEOUT_MS)
            asked = event.client_ts
            if asked is None or not event.ts - timeout <= asked <= event.ts:
                asked = event.ts
            return asked + int(timeout)
        return parse_timestamp_ms(body.get("expires_at"))

    def agent_online(self, agent_id: str) -> None:
        """Deliver decisions made while the agent was away (unless expired)."""
        writes: list[WriteOp] = []
        now = self.clock()
        for record in list(self.open.values()):
            if record.agent_id != agent_id or record.status != DECIDED:
                continue
            if record.delivered_at is not None and record.kind == TOOL_CONTROL:
                continue  # a tool control is for the connection that ran the call
            if record.expires_at is not None and now >= record.expires_at:
                continue  # expire_due() marks it
            self._deliver(record, writes)
        self._commit(writes)

    def expire_due(self) -> None:
        """Close requests whose deadline passed before they were acknowledged.

        A decision delivered but never acknowledged closes too: the agent no longer waits for
        it, and an open one would be sent again to whichever process registers next.
        """
        now = self.clock()
        writes: list[WriteOp] = []
        agents = self.ingest.registry.agents
        for record in list(self.open.values()):
            if record.expires_at is None or now < record.expires_at:
                continue
            if not self._held_here(agents.get(record.agent_id)):
                continue  # another Studio of the cluster closes it
            if record.status in (PENDING, DECIDED):
                self._save(dataclasses.replace(record, status=EXPIRED), writes, "expired")
        self._commit(writes)

    # ---- what people decide ----

    def _decidable(
        self, request_id: str, kind: str, by: str, attempt: dict[str, Any]
    ) -> RequestRecord:
        record = self.open.get(request_id)
        if record is None:
            raise NotFound(f"no open request {request_id!r}")
        if record.kind != kind:
            raise BadRequest(f"request {request_id} is a {record.kind} request, not a {kind}")
        if record.status != PENDING:
            raise self._closed(record, by, attempt)
        if record.expires_at is not None and self.clock() >= record.expires_at:
            writes: list[WriteOp] = []
            self._save(dataclasses.replace(record, status=EXPIRED), writes, "expired")
            self._commit(writes)
            raise Expired(f"request {request_id} expired at {iso_ms(record.expires_at)}")
        return record

    def _closed(self, record: RequestRecord, by: str, attempt: dict[str, Any]) -> StudioError:
        """The error for deciding a request already decided; the refused attempt is audited."""
        if record.status == EXPIRED:
            return Expired(f"request {record.id} expired at {iso_ms(record.expires_at)}")
        detail = {"attempt": attempt, "winner": record.decided_by}
        self._commit(
            [ops.AddAudit(self.clock(), by, "conflict", record.id, record.agent_id, detail)]
        )
        return Conflict(
            f"request {record.id} was already decided by {record.decided_by} "
            f"at {iso_ms(record.decided_at)}",
            decided_by=record.decided_by,
            decided_at=iso_ms(record.decided_at),
            response=record.response,
        )

    async def _open_for(
        self, request_id: str, kind: str, by: str, attempt: dict[str, Any]
    ) -> RequestRecord:
        """The open request to decide, or the error saying (from storage) why it is not open."""
        try:
            return self._decidable(request_id, kind, by, attempt)
        except NotFound:
            stored = self.latest(request_id) or await self._run(
                self.ingest.store.get_request, request_id
            )
            if stored is None:
                raise NotFound(f"no request {request_id!r}") from None
            raise self._closed(stored, by, attempt) from None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def decide(
        self, request_id: str, decision: str, note: str | None, by: str
    ) -> RequestRecord:
        if decision not in ("allow", "deny"):
            raise BadRequest("'decision' must be 'allow' or 'deny'")
        # Valid JSON that no UTF-8 encoder takes: it failed after the decision was taken.
        note, by = replace_surrogates(note), replace_surrogates(by)
        response: dict[str, Any] = {"decision": decision}
        if note:
            response["note"] = note
        args = {"request_id": request_id, "decision": decision, "note": note, "by": by}
        decided = await self._forwarded("decide", request_id, args)
        if decided is not None:
            return decided
        record = await self._open_for(request_id, PERMISSION, by, response)
        return await self._decided(record, response, by, "decided")

    async def answer(self, request_id: str, answers: Any, by: str) -> RequestRecord:
        try:
            check_bounds(answers)
        except AnswerError as exc:
            raise BadRequest(str(exc)) from None
        by, answers = replace_surrogates(by), replace_surrogates(answers)
        args = {"request_id": request_id, "answers": answers, "by": by}
        answered = await self._forwarded("answer", request_id, args)
        if answered is not None:
            return answered
        try:
            record = await self._open_for(request_id, QUESTION, by, {"answers": answers})
            response = {"answers": keyed_answers(record.request.get("questions"), answers)}
        except AnswerError as exc:
            raise BadRequest(str(exc)) from None
        return await self._decided(record, response, by, "answered")

    async def _decided(
        self, record: RequestRecord, response: dict[str, Any], by: str, action: str
    ) -> RequestRecord:
        writes: list[WriteOp] = []
        record = dataclasses.replace(
            record, status=DECIDED, response=response, decided_by=by, decided_at=self.clock()
        )
        self._encodable(record)
        record = self._save(record, writes, action, by, response)
        record = self._deliver(record, writes)
        self._commit(writes)
        if self.ingest.pipeline is not None:
            await self.ingest.pipeline.barrier()
        return self.open.get(record.id, record)

    async def control_tool(
        self, agent_id: str, call_id: str, action: str, note: str | None, by: str
    ) -> RequestRecord:
        if action not in TOOL_ACTIONS:
            raise BadRequest("'action' must be pause, resume or cancel")
        call_id, note, by = (
            replace_surrogates(call_id),
            replace_surrogates(note),
            replace_surrogates(by),
        )
        agent = self.ingest.registry.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}")
        if self.peers is not None and agent.connection == REMOTE:
            args = {"agent_id": agent_id, "call_id": call_id, "action": action}
            sent = await self.peers.forward("tool", {**args, "note": note, "by": by})
            if sent is not None:
                return sent
        conn = self.ingest.connections.get(agent.connection or 0)
        if conn is None or not conn.accepts_control:
            raise Conflict(
                f"agent {agent_id} is not connected with control enabled; "
                "a tool control only applies to a running call"
            )
        now = self.clock()
        request: dict[str, Any] = {"call_id": call_id, "action": action}
        if note:
            request["note"] = note
        record = RequestRecord(
            id="r_" + secrets.token_hex(6),
            kind=TOOL_CONTROL,
            agent_id=agent_id,
            session_id=agent.current_session_id,
            key=call_id,
            status=DECIDED,
            created_at=now,
            expires_at=None,
            request=request,
            response=request,
            decided_by=by,
            decided_at=now,
        )
        self._encodable(record)
        writes: list[WriteOp] = []
        # A newer control for the same call closes an unanswered older one (audit
        # `superseded`); the agent's late response to it, if any, is still recorded.
        self._supersede(record, writes)
        self._save(record, writes, "tool_control", by, request)
        record = self._deliver(record, writes)
        self._commit(writes)
        if self.ingest.pipeline is not None:
            await self.ingest.pipeline.barrier()
        return record

    def _encodable(self, record: RequestRecord) -> None:
        """Refuse (400) what could not be stored or sent, before any state changes."""
        try:
            orjson.dumps(view(record))
            orjson.dumps(self._message(record))
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is both
            raise BadRequest(f"the decision cannot be encoded as JSON: {exc}") from None

    def _deliver(self, record: RequestRecord, writes: list[WriteOp]) -> RequestRecord:
        """Send the decision to the agent's live connection if it has one that accepts it."""
        agent = self.ingest.registry.agents.get(record.agent_id)
        conn = self.ingest.connections.get(agent.connection or 0) if agent else None
        if conn is None or not conn.accepts_control:
            return record
        conn.reply(MessageType.CONTROL, self._message(record))
        delivered = dataclasses.replace(record, delivered_at=self.clock())
        return self._save(delivered, writes, "delivered", "studio", {"connection": conn.id})

    @staticmethod
    def _message(record: RequestRecord) -> dict[str, object]:
        response = record.response or {}
        if record.kind == PERMISSION:
            message: dict[str, object] = {
                "event_type": "permission_decided",
                "request_id": record.id,
                "call_id": record.key,
                "decision": response.get("decision"),
                "decided_by": record.decided_by,
            }
            if response.get("note"):
                message["note"] = response["note"]
        elif record.kind == QUESTION:
            message = {
                "event_type": "user_answer",
                "request_id": record.key,
                "answers": response.get("answers"),
                "decided_by": record.decided_by,
            }
        if record.kind in (PERMISSION, QUESTION):
            if record.request.get("ask_id") is not None:
                message["ask_id"] = record.request["ask_id"]  # the one ask this answers
            return message
        return {
            "event_type": "tool_control",
            "request_id": record.id,
            "call_id": record.key,
            "action": response.get("action"),
            **({"note": response["note"]} if response.get("note") else {}),
        }
