"""The Studios of a cluster: live events, agents' presence and controls shared through Redis.

Several Studios run on one PostgreSQL database (`--cluster redis://...`). Each commit of
events is numbered by the database in commit order (`PostgresStore._number`), so the ids
of all the Studios' events make one sequence with no holes. Each Studio publishes its commits
on one Redis channel per database; every Studio (itself included) hands them to its live bus
in id order: a run that arrives before an earlier one waits for it, and a hole that stays
(a message lost, a Studio that died between its commit and its publication) is read from
the database. So every console, whichever Studio serves it, sees every event once, in the
order of the cursor, and a replay from a cursor finds nothing missing.

The same channel carries each agent's view as its own Studio changes it (registration,
connection, state), heartbeats (a Studio silent for `PEER_TIMEOUT_S` is gone: its agents are
offline), request views, and calls: a decision taken on one Studio about a request another
holds (the one its agent's event was committed by) is taken there, and a tool control goes
to the Studio the agent is connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..control.service import Conflict, ControlService, Expired
from ..errors import BadRequest, NotFound, StudioError
from ..ingest.registry import REMOTE, LiveAgent, Registry
from ..ingest.service import IngestService
from ..models import EventFilter, RequestRecord, StoredEvent, Usage
from ..store import CommitResult, Store
from ..store._rows import request_of, request_row
from .bus import LiveBus

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

BEAT_S = 1.0  # how often a Studio says it is alive
PEER_TIMEOUT_S = 5.0  # silent this long, a Studio is gone, and its agents offline
GAP_S = 0.25  # a hole in the ids this old is read from the database
# A hole the database does not fill this long after it opened holds ids no event has (events
# deleted since): the runs after it go on.
HOLE_S = 2.0
CALL_TIMEOUT_S = 5.0  # a call no Studio answers by then is taken here
# A producer's claim waits less, and only for the Studios heard from in the last two beats: a
# client's registration is answered after it (the SDK waits 5 s), and a Studio that died a
# moment ago holds nothing unwritten.
CLAIM_TIMEOUT_S = 2.0
CLAIM_HEARD_S = 2.5
RECONNECT_S = (0.1, 2.0)  # the first and the longest wait between tries to reach Redis
FILL_MAX = 5_000  # events read from the database per step of filling a hole
OUT_MAX = 100_000  # messages waiting for Redis, at most (the database fills what is dropped)

_ERRORS: dict[str, type[StudioError]] = {
    "Conflict": Conflict,
    "Expired": Expired,
    "NotFound": NotFound,
    "BadRequest": BadRequest,
}


def _event_row(e: StoredEvent) -> list[Any]:
    return [*e[:8], e.payload.decode()]


def _event_of(row: list[Any]) -> StoredEvent:
    event_id, agent_id, session_id, channel, event_type, severity, ts, client_ts, payload = row
    return StoredEvent(
        event_id,
        agent_id,
        session_id,
        channel,
        event_type,
        severity,
        ts,
        client_ts,
        payload.encode(),
    )


def _usage_row(agent_id: str, u: Usage) -> list[Any]:
    return [
        agent_id,
        u.model,
        u.input,
        u.output,
        u.cache_read,
        u.cache_creation,
        u.reasoning,
        u.cost,
        u.priceable,
    ]


def _snapshot(agent: LiveAgent) -> dict[str, Any]:
    """What another Studio needs of an agent's view that its own events do not tell."""
    return {
        "id": agent.id,
        "name": agent.name,
        "model": agent.model,
        "template_id": agent.template_id,
        "capabilities": list(agent.capabilities),
        "metadata": agent.metadata,
        "state": agent.state,
        "current_session_id": agent.current_session_id,
        "implicit": agent.implicit,
        "registered_at": agent.registered_at,
        "connected_at": agent.connected_at,
        "last_seen": agent.last_seen,
        "online": agent.connection is not None and agent.connection > 0,
    }


class ClusterLink:
    """This Studio's part in a cluster: publish its commits and agents, take the others'."""

    def __init__(
        self,
        url: str,
        *,
        store: Store,
        bus: LiveBus,
        ingest: IngestService,
        registry: Registry,
        control: ControlService,
        clock: Callable[[], int],
    ) -> None:
        self.url = url
        self.store = store
        self.bus = bus
        self.ingest = ingest
        self.registry = registry
        self.control = control
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._own = orjson.dumps({"o": self.instance})[:-1]  # how its own messages begin
        self.channel = ""  # named after the database at `start`
        self.connected = False
        self.peers: dict[str, float] = {}  # the other Studios heard from: when, last
        self.published = 0  # events this Studio published for the others
        self.received = 0  # events of the others it took
        self.filled = 0  # events it read from the database to fill holes
        self._redis: aioredis.Redis | None = None
        self._next = 1  # the id of the next event to hand to the bus
        self._held: dict[int, tuple[list[StoredEvent], bool, list[tuple[str, Usage]]]] = {}
        self._held_since = 0.0
        self._owner: dict[str, str] = {}  # agent id: the Studio that last told of it
        self._out: deque[tuple[str, bytes]] = deque()  # (kind, message)
        self._out_ready = asyncio.Event()
        self._dropped_out = 0
        self._calls: dict[str, tuple[asyncio.Future[dict[str, Any]], set[str]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._filling = False

    # ---- lifecycle ----

    async def start(self) -> None:
        """Subscribe, then learn where the ids are: before the pipeline starts."""
        import redis.asyncio as aioredis

        self.channel = f"aster-studio:{self.store.store_id}"
        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=3, socket_timeout=None, health_check_interval=10
        )
        try:
            await asyncio.wait_for(self._redis.ping(), 5)
        except Exception as exc:
            await self._redis.aclose()
            raise StudioError(
                f"the cluster's Redis at {_describe(self.url)} cannot be reached: {exc}"
            ) from exc
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self.connected = True
        # Subscribed first: whatever commits after this read reaches us on the channel.
        self._next = await self._newest_id() + 1
        self._tasks = [
            asyncio.create_task(self._receive(pubsub), name="cluster-receive"),
            asyncio.create_task(self._send(), name="cluster-send"),
            asyncio.create_task(self._watch(), name="cluster-watch"),
        ]
        self._say({"k": "hello"})
        log.info(
            "cluster: this Studio is %s, on Redis %s, channel %s",
            self.instance,
            _describe(self.url),
            self.channel,
        )

    async def stop(self) -> None:
        self._say({"k": "bye"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain(), 2)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        for future, _ in self._calls.values():
            future.cancel()

    async def _drain(self) -> None:
        while self._out and self.connected:
            await asyncio.sleep(0.01)

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "instance": self.instance,
            "redis": _describe(self.url),
            "connected": self.connected,
            "peers": sorted(p for p, seen in self.peers.items() if now - seen < PEER_TIMEOUT_S),
            "next_event_id": self._next,
            "held_runs": len(self._held),
            "published_events": self.published,
            "received_events": self.received,
            "filled_events": self.filled,
            "dropped_messages": self._dropped_out,
        }

    async def _newest_id(self) -> int:
        """The last id handed out and committed: the commits of the cluster number past it.
        (Not the newest event's: a lone Studio's reservation, or the newest events deleted,
        leave the counter above it.)"""
        loop = asyncio.get_running_loop()
        counter = getattr(self.store, "committed_through", None)
        if counter is not None:
            return int(await loop.run_in_executor(None, counter))
        newest = await loop.run_in_executor(None, self.store.events_before, EventFilter(), None, 1)
        return newest[0].id if newest else 0

    # ---- sending ----

    def _say(self, message: dict[str, Any]) -> None:
        message = {"o": self.instance, **message}  # first: `_receive` skips its own unread
        if len(self._out) >= OUT_MAX:
            self._out.popleft()  # the others read what they miss of events from the database
            self._dropped_out += 1
        self._out.append((message["k"], orjson.dumps(message)))
        self._out_ready.set()

    async def _send(self) -> None:
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            while self._out:
                if not self.connected or self._redis is None:
                    await asyncio.sleep(0.1)
                    continue
                _, data = self._out[0]
                try:
                    await self._redis.publish(self.channel, data)
                except Exception as exc:  # Redis went away: the receiver reconnects
                    log.warning("cluster: cannot publish to Redis: %s", exc)
                    self.connected = False
                    await asyncio.sleep(RECONNECT_S[0])
                    continue
                self._out.popleft()

    # ---- the ingest service's and control service's hooks ----

    def committed(self, result: CommitResult) -> None:
        """This Studio committed events (numbered by the database): publish them, and hand
        them to the bus in their turn."""
        events = result.events
        self.published += len(events)
        self._say(
            {
                "k": "commit",
                "e": [_event_row(e) for e in events],
                "u": [_usage_row(a, u) for a, u in result.usage],
            }
        )
        self._arrive(list(events), False, [])

    def agent_view(self, agent: LiveAgent) -> None:
        """An agent's view went out here: tell the others, if this Studio has the say."""
        connection = agent.connection
        if connection is None and self._owner.get(agent.id) == self.instance:
            self._say({"k": "agent", "a": _snapshot(agent)})  # it left: offline
        elif connection is not None and connection > 0:
            self._tell(agent)
        # else another Studio's agent, or one this Studio never had

    def _tell(self, agent: LiveAgent) -> None:
        """Tell the others of an agent connected here; this Studio tells of it from now on
        (when it leaves, too)."""
        self._owner[agent.id] = self.instance
        self._say({"k": "agent", "a": _snapshot(agent)})

    def request_saved(self, record: RequestRecord) -> None:
        self._say({"k": "request", "r": list(request_row(record))})

    async def forward(self, op: str, args: dict[str, Any]) -> RequestRecord | None:
        """Have the Studio holding what `op` acts on do it (ControlPeers)."""
        reply = await self._call(op, args)
        if reply.get("r") is not None:
            return request_of(tuple(reply["r"]))
        if reply.get("err") is not None:
            kind, message, detail = reply["err"]
            error = _ERRORS.get(kind, StudioError)
            if error is Conflict:
                raise Conflict(message, **detail)
            raise error(message)
        return None  # every Studio said it holds nothing of it

    def leads(self) -> bool:
        """Whether this Studio acts for the cluster on the requests of agents connected to
        none of its Studios (ControlPeers): of the Studios heard from, the one whose name
        sorts first. Each Studio reckons alike from the beats, so one leads, but for the
        moments after one joins or goes."""
        now = time.monotonic()
        return all(
            self.instance < peer for peer, seen in self.peers.items() if now - seen < PEER_TIMEOUT_S
        )

    async def claim_producer(self, producer_id: str) -> None:
        """A producer connects here: have any other Studio that has it let go of it, and
        wait until what that one took of it is durable (the ingest service's `on_claim`)."""
        await self._call(
            "producer", {"producer_id": producer_id}, CLAIM_TIMEOUT_S, heard=CLAIM_HEARD_S
        )

    async def _call(
        self,
        op: str,
        args: dict[str, Any],
        timeout: float = CALL_TIMEOUT_S,
        *,
        heard: float = PEER_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Ask the other Studios heard from in the last `heard` seconds; the first answer
        that did something, or {} once each has said it had nothing to do (or none answered
        within `timeout`)."""
        now = time.monotonic()
        waiting = {p for p, seen in self.peers.items() if now - seen < heard}
        if not waiting or not self.connected:
            return {}
        call = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call] = (future, waiting)
        self._say({"k": "call", "id": call, "op": op, "args": args})
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.warning("cluster: no Studio answered a %s call in %.0f s", op, timeout)
            return {}
        finally:
            self._calls.pop(call, None)

    # ---- receiving ----

    async def _receive(self, pubsub: Any) -> None:
        """Take the channel's messages; reach Redis again whenever it goes."""
        wait = RECONNECT_S[0]
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
                if not self.connected:
                    self._rejoin()
                wait = RECONNECT_S[0]
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    if not data.startswith(self._own):  # what this Studio said comes back
                        self._take(orjson.loads(data))
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                if self.connected:
                    log.warning(
                        "cluster: lost Redis (%s); reading what it misses from the "
                        "database meanwhile",
                        exc,
                    )
                self.connected = False
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_S[1])
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    assert self._redis is not None
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self.channel)

    def _rejoin(self) -> None:
        """Redis is back: what was said meanwhile is stale but the commits (the others may
        not notice what they miss of them otherwise); take again what was missed."""
        self.connected = True
        log.warning("cluster: Redis is back")
        kept = [item for item in self._out if item[0] == "commit"]
        self._dropped_out += len(self._out) - len(kept)
        self._out = deque(kept)
        self._say({"k": "hello"})  # the others tell of their agents and open requests again
        self._fill_soon()

    def _take(self, message: dict[str, Any]) -> None:
        origin = message.get("o")
        if not isinstance(origin, str) or origin == self.instance:
            return
        kind = message.get("k")
        if kind == "bye":
            self.peers.pop(origin, None)
            self._gone(origin)
            return
        known = origin in self.peers
        self.peers[origin] = time.monotonic()
        if kind == "commit":
            events = [_event_of(row) for row in message["e"]]
            usage = [(u[0], Usage(*u[1:])) for u in message["u"]]
            self.received += len(events)
            if events:
                self._arrive(events, True, usage)
        elif kind == "agent":
            self._agent(origin, message["a"])
        elif kind == "request":
            self.control.saved_elsewhere(request_of(tuple(message["r"])))
        elif kind == "hello" or (kind == "beat" and not known):
            # A Studio (re)joined: tell it of this one (which leads, say, depends on it) now
            # rather than at the next beat, and of the agents connected here, and their
            # requests.
            if kind == "hello":
                self._say({"k": "beat"})
            agents = self.registry.agents
            here = {a.id for a in agents.values() if a.connection is not None and a.connection > 0}
            for agent_id in here:
                self._tell(agents[agent_id])
            for record in list(self.control.open.values()):
                if record.agent_id in here:
                    self.request_saved(record)
        elif kind == "call":
            asyncio.get_running_loop().create_task(self._answer(origin, message))
        elif kind == "reply" and message.get("to") == self.instance:
            pending = self._calls.get(message.get("id", ""))
            if pending is None:
                return
            future, waiting = pending
            waiting.discard(origin)
            if future.done():
                return
            if (
                message.get("r") is not None
                or message.get("err") is not None
                or message.get("done")
            ):
                future.set_result(message)
            elif not waiting:
                future.set_result({})

    # ---- events, in id order ----

    def _arrive(
        self, events: list[StoredEvent], remote: bool, usage: list[tuple[str, Usage]]
    ) -> None:
        if events[-1].id < self._next:
            return  # read from the database already
        if events[0].id < self._next:
            # A run partly read from the database already: another Studio's usage, which
            # does not say whose event it was, is read for the rest.
            events = [e for e in events if e.id >= self._next]
            if remote and usage:
                first, last = events[0].id, events[-1].id
                asyncio.get_running_loop().create_task(self._count_usage(first, last))
            usage = []
        if events[0].id > self._next:
            if not self._held:
                self._held_since = time.monotonic()
            self._held[events[0].id] = (events, remote, usage)
            return
        self._deliver(events, remote, usage)
        while self._next in self._held:
            self._deliver(*self._held.pop(self._next))
        self._held_since = time.monotonic() if self._held else 0.0  # a hole from now on

    def _deliver(
        self, events: list[StoredEvent], remote: bool, usage: list[tuple[str, Usage]]
    ) -> None:
        self._next = events[-1].id + 1
        if remote:
            self.ingest.count_elsewhere(events, usage)
        self.bus.publish(events)
        self.bus.committed(events[-1].id)

    def _fill_soon(self) -> None:
        if not self._filling:
            self._filling = True
            asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        """Read from the database the events before the first held run (or, with Redis gone,
        all there are past the last handed over) and hand them over."""
        loop = asyncio.get_running_loop()
        try:
            for _ in range(100):  # bounded: the rest at the next watch
                until = min(self._held) if self._held else None
                if until is not None and until <= self._next:
                    break
                want = FILL_MAX if until is None else min(FILL_MAX, until - self._next)
                events, usage = await loop.run_in_executor(None, self._read, self._next, want)
                events = [e for e in events if e.id >= self._next]
                if until is not None:
                    events = [e for e in events if e.id < until]
                if not events:
                    break
                self.filled += len(events)
                self._next = events[-1].id + 1
                first, last = events[0].id, events[-1].id
                counted = [(a, u) for event_id, a, u in usage if first <= event_id <= last]
                self.ingest.count_elsewhere(events, counted, read=True)
                self.bus.publish(events)
                self.bus.committed(events[-1].id)
                while self._next in self._held:
                    self._deliver(*self._held.pop(self._next))
                if until is None and len(events) < want:
                    break
            if self._held and time.monotonic() - self._held_since > HOLE_S:
                first = min(self._held)
                if first > self._next:
                    log.warning(
                        "cluster: no event has the ids %d to %d; going on past them",
                        self._next,
                        first - 1,
                    )
                    self._next = first
            while self._held and min(self._held) <= self._next:  # the reads overtook them
                self._arrive(*self._held.pop(min(self._held)))
            if not self._held:
                self._held_since = 0.0
        except Exception:
            log.exception("cluster: cannot read the events missed from the database")
        finally:
            self._filling = False

    def _read(
        self, start: int, limit: int
    ) -> tuple[list[StoredEvent], list[tuple[int, str, Usage]]]:
        """(Blocking.) Up to `limit` events from the id `start` on, and their usage."""
        events = self.store.events_after(EventFilter(), start - 1, limit)
        if not events:
            return events, []
        return events, self.store.usage_of_events(events[0].id, events[-1].id)

    async def _count_usage(self, first: int, last: int) -> None:
        """Count the usage of the events `first` to `last` (handed over already) as read
        from the database."""
        try:
            usage = await asyncio.get_running_loop().run_in_executor(
                None, self.store.usage_of_events, first, last
            )
            self.ingest.count_elsewhere([], [(a, u) for _, a, u in usage], read=True)
        except Exception:
            log.exception("cluster: cannot read the usage of events %d to %d", first, last)

    # ---- agents ----

    def _agent(self, origin: str, snap: dict[str, Any]) -> None:
        agent_id = snap["id"]
        self._owner[agent_id] = origin
        agent = self.registry.agents.get(agent_id)
        if agent is None:
            agent = LiveAgent(
                id=agent_id, registered_at=snap["registered_at"], last_seen=snap["last_seen"]
            )
            self.registry.add(agent)
        elif agent.connection is not None and agent.connection > 0:
            return  # connected here too: this Studio's view stands
        agent.name = snap["name"]
        agent.model = snap["model"]
        agent.template_id = snap["template_id"]
        agent.capabilities = tuple(snap["capabilities"])
        agent.metadata = snap["metadata"]
        agent.state = snap["state"]
        agent.current_session_id = snap["current_session_id"]
        agent.implicit = snap["implicit"]
        agent.connected_at = snap["connected_at"]
        agent.last_seen = max(agent.last_seen, snap["last_seen"])
        agent.connection = REMOTE if snap["online"] else None
        self.ingest.agent_changed(agent)

    def _gone(self, origin: str) -> None:
        """A Studio left or went silent: its agents are offline."""
        now = self.clock()
        for agent_id, owner in list(self._owner.items()):
            if owner != origin:
                continue
            agent = self.registry.agents.get(agent_id)
            if agent is not None and agent.connection == REMOTE:
                agent.connection = None
                agent.last_seen = now
                self.ingest.agent_changed(agent)
        log.info("cluster: Studio %s is gone; its agents are offline", origin)

    async def _watch(self) -> None:
        """Beat; notice Studios gone silent; fill holes that stay."""
        while True:
            await asyncio.sleep(BEAT_S)
            try:
                self._say({"k": "beat"})
                now = time.monotonic()
                for peer, seen in list(self.peers.items()):
                    if now - seen > PEER_TIMEOUT_S:
                        del self.peers[peer]
                        self._gone(peer)
                if (self._held and now - self._held_since > GAP_S) or not self.connected:
                    self._fill_soon()
            except Exception:
                log.exception("cluster: periodic check failed")

    # ---- calls ----

    async def _answer(self, origin: str, message: dict[str, Any]) -> None:
        """Take a call another Studio made, if this one holds what it acts on."""
        op, args = message.get("op"), message.get("args") or {}
        reply: dict[str, Any] = {"k": "reply", "to": origin, "id": message.get("id")}
        try:
            record: RequestRecord | None = None
            agent = self.registry.agents.get(args.get("agent_id", ""))
            here = agent is not None and agent.connection is not None and agent.connection > 0
            if args.get("lead") and op in ("decide", "answer"):
                here = self.leads()  # it decides, or has the Studio the agent is on decide
            if op in ("decide", "answer") and here:
                if op == "decide":
                    record = await self.control.decide(
                        args["request_id"], args["decision"], args.get("note"), args["by"]
                    )
                else:
                    record = await self.control.answer(
                        args["request_id"], args.get("answers"), args["by"]
                    )
            elif op == "producer":
                reply["done"] = await self.ingest.release_producer(args["producer_id"])
            elif op == "tool" and here:
                record = await self.control.control_tool(
                    args["agent_id"],
                    args["call_id"],
                    args["action"],
                    args.get("note"),
                    args["by"],
                )
            if record is not None:
                reply["r"] = list(request_row(record))
        except StudioError as exc:
            detail = getattr(exc, "detail", {}) if isinstance(exc, Conflict) else {}
            reply["err"] = [type(exc).__name__, str(exc), detail]
        except Exception as exc:  # answered, so the caller does not wait for nothing
            log.exception("cluster: a %s call failed", op)
            reply["err"] = ["StudioError", f"the {op} failed on {self.instance}: {exc}", {}]
        self._say(reply)


def _describe(url: str) -> str:
    """A Redis URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{netloc}").geturl()
