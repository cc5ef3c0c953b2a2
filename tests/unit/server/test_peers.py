"""A cluster's Studio (live/peers.py) without Redis: events handed over in id order, holes
read from the database, other Studios' events counted, agents' presence taken and given."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson
import pytest

from aster_studio.ingest.registry import REMOTE, LiveAgent, Registry
from aster_studio.ingest.service import IngestService
from aster_studio.live.bus import LiveBus
from aster_studio.live.peers import ClusterLink
from aster_studio.models import EventFilter, StoredEvent, Usage
from aster_studio_sdk.protocol import Limits


def ev(event_id: int, agent: str = "a", etype: str = "text_chunk", **body: Any) -> StoredEvent:
    payload = orjson.dumps({"event_type": etype, **body})
    return StoredEvent(
        event_id, agent, None, "progress", etype, None, 1000 + event_id, None, payload
    )


class Bus:
    """What the link hands to a live bus, in order."""

    def __init__(self) -> None:
        self.published: list[int] = []
        self.committed_through = 0

    def publish(self, events: list[StoredEvent]) -> None:
        self.published += [e.id for e in events]

    def committed(self, through: int) -> None:
        assert through >= self.committed_through
        self.committed_through = through

    def changed(self, kind: str, view: dict[str, Any]) -> None:
        pass


class Store:
    """The database's events, as far as the link reads them."""

    def __init__(self, events: list[StoredEvent]) -> None:
        self.events = events
        self.usage: list[tuple[int, str, Usage]] = []  # (event id, agent id, usage)
        self.store_id = "test"

    def usage_of_events(self, first_id: int, last_id: int) -> list[tuple[int, str, Usage]]:
        return [u for u in self.usage if first_id <= u[0] <= last_id]

    def events_after(self, flt: EventFilter, after: int, limit: int) -> list[StoredEvent]:
        return [e for e in self.events if e.id > after][:limit]

    def events_before(self, flt: EventFilter, before: int | None, limit: int) -> list[StoredEvent]:
        return sorted(self.events, key=lambda e: -e.id)[:limit]


class Control:
    open: dict[str, Any] = {}


def link(store_events: list[StoredEvent] | None = None) -> tuple[ClusterLink, Bus, Registry]:
    bus, registry, store = Bus(), Registry(), Store(store_events or [])
    ingest = IngestService(
        cast(Any, store),
        registry,
        LiveBus(),  # its agents' views (none subscribe); the link's own bus records
        lambda: 5_000,
        limits=Limits(),
        stall_after_ms=60_000,
        outbox_max=100,
    )
    cluster = ClusterLink(
        "redis://127.0.0.1:1/0",
        store=cast(Any, store),
        bus=cast(Any, bus),
        ingest=ingest,
        registry=registry,
        control=cast(Any, Control()),
        clock=lambda: 5_000,
    )
    return cluster, bus, registry


async def test_runs_that_arrive_out_of_order_go_to_the_bus_in_id_order() -> None:
    cluster, bus, _ = link()
    cluster._arrive([ev(4), ev(5)], True, [])
    cluster._arrive([ev(3)], True, [])
    assert bus.published == []  # 1 and 2 are not there yet
    cluster._arrive([ev(1), ev(2)], False, [])
    assert bus.published == [1, 2, 3, 4, 5]
    assert bus.committed_through == 5
    cluster._arrive([ev(2), ev(3)], True, [])  # again (read from the database meanwhile)
    assert bus.published == [1, 2, 3, 4, 5]


async def test_a_hole_that_stays_is_read_from_the_database_then_the_rest_follows() -> None:
    cluster, bus, registry = link([ev(1), ev(2, agent="b"), ev(3)])
    cluster._arrive([ev(3)], True, [])  # 1 and 2 were published by a Studio that died
    await cluster._fill()
    assert bus.published == [1, 2, 3]
    assert cluster.filled == 2
    assert {a: registry.agents[a].event_count for a in ("a", "b")} == {"a": 2, "b": 1}


async def test_a_hole_no_event_fills_is_passed_over_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aster_studio.live import peers

    cluster, bus, _ = link([ev(1), ev(5)])  # 2 to 4 were deleted
    cluster._arrive([ev(1)], False, [])
    cluster._arrive([ev(5)], True, [])
    await cluster._fill()
    assert bus.published == [1]  # it may yet come
    monkeypatch.setattr(peers, "HOLE_S", 0.0)
    await cluster._fill()
    assert bus.published == [1, 5]
    cluster._arrive([ev(6)], True, [])
    assert bus.published == [1, 5, 6]


async def test_a_studio_starts_past_the_last_id_committed_not_the_newest_event() -> None:
    cluster, bus, _ = link([ev(1), ev(2)])
    cluster.store.committed_through = lambda: 1_000_002  # type: ignore[attr-defined]
    assert await cluster._newest_id() == 1_000_002
    cluster._next = 1_000_003
    cluster._arrive([ev(1_000_003)], True, [])
    assert bus.published == [1_000_003]


async def test_with_redis_gone_the_events_past_the_last_handed_over_are_read() -> None:
    cluster, bus, _ = link([ev(i) for i in range(1, 8)])
    cluster._arrive([ev(1)], False, [])
    cluster.connected = False
    await cluster._fill()
    assert bus.published == [1, 2, 3, 4, 5, 6, 7]


async def test_another_studios_events_count_on_their_agents_its_own_do_not() -> None:
    cluster, _, registry = link()
    registry.add(LiveAgent(id="a", registered_at=1, last_seen=1))
    usage = [("a", Usage("gpt-4o", 10, 5, cost=0.5))]
    cluster._arrive(
        [ev(1), ev(2, etype="error"), ev(3, etype="state_changed", state="working")], True, usage
    )
    cluster._arrive([ev(4), ev(5)], False, [])
    agent = registry.agents["a"]
    assert (agent.event_count, agent.error_count, agent.state) == (3, 1, "working")
    assert agent.usage.requests == 1
    assert agent.last_event_at == 1003
    cluster._arrive([ev(6, agent="new", etype="done", reason="completed")], True, [])
    assert (registry.agents["new"].implicit, registry.agents["new"].state) == (True, "completed")


async def test_the_usage_of_events_read_from_the_database_counts_on_their_agents() -> None:
    """It counted only at the next start: live totals left out what Redis did not carry."""
    cluster, bus, registry = link([ev(i, agent="a" if i % 2 else "b") for i in range(1, 7)])
    registry.add(LiveAgent(id="a", registered_at=1, last_seen=1))
    here = LiveAgent(id="b", registered_at=1, last_seen=1)
    here.connection = 7  # connected here: counted at this Studio's own commits
    registry.add(here)
    cluster.store.usage = [  # type: ignore[attr-defined]
        (1, "a", Usage("gpt-4o", 10, 5, cost=0.5)),
        (2, "b", Usage("gpt-4o", 1, 1, cost=0.1)),
        (3, "a", Usage(None, 7, 0)),
        (5, "a", Usage("gpt-4o", 100, 50, cost=5.0)),
    ]
    cluster._arrive([ev(5), ev(6, agent="b")], True, [("a", Usage("gpt-4o", 100, 50, cost=5.0))])
    await cluster._fill()  # 1 to 4 are read
    assert bus.published == [1, 2, 3, 4, 5, 6]
    usage = registry.agents["a"].usage
    assert (usage.requests, usage.input, usage.unpriced_tokens) == (3, 117, 7)
    assert usage.cost == pytest.approx(5.5)
    assert registry.agents["b"].usage.requests == 0


async def test_a_run_partly_read_already_counts_the_usage_of_the_rest() -> None:
    cluster, bus, registry = link([ev(1), ev(2)])
    registry.add(LiveAgent(id="a", registered_at=1, last_seen=1))
    cluster.store.usage = [  # type: ignore[attr-defined]
        (2, "a", Usage("gpt-4o", 10, 0, cost=1.0)),
        (3, "a", Usage("gpt-4o", 20, 0, cost=2.0)),
    ]
    cluster.connected = False
    await cluster._fill()  # Redis gone: 1 and 2 are read, 2's usage with them
    cluster.store.events.append(ev(3))  # type: ignore[attr-defined]
    # The commit of 2 and 3, heard late: its usage does not say which event it was.
    cluster._arrive([ev(2), ev(3)], True, [("a", Usage("gpt-4o", 10, 0, cost=1.0))] * 2)
    assert bus.published == [1, 2, 3]
    for _ in range(200):
        if registry.agents["a"].usage.requests == 2:
            break
        await asyncio.sleep(0.01)
    assert registry.agents["a"].usage.input == 30


def test_the_studio_whose_name_sorts_first_among_those_heard_from_leads() -> None:
    cluster, _, _ = link()
    cluster.instance = "host:2:b"
    assert cluster.leads()  # alone
    cluster.peers = {"host:3:c": time.monotonic()}
    assert cluster.leads()
    cluster.peers["host:1:a"] = time.monotonic() - 60  # gone silent
    assert cluster.leads()
    cluster.peers["host:1:a"] = time.monotonic()
    assert not cluster.leads()


async def test_a_studio_that_joins_hears_of_the_others_at_once() -> None:
    """It heard of them at their next beat (up to a second), and took itself for the leader
    meanwhile: two Studios decided one request."""
    cluster, _, _ = link()
    cluster.instance = "host:3:c"
    cluster._take({"o": "host:2:b", "k": "hello"})
    assert not cluster.leads()  # it knows of the one that joined
    assert [kind for kind, _ in cluster._out] == ["beat"]  # which now knows of it


def snapshot(agent_id: str, *, online: bool, **fields: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": fields.get("name", "N"),
        "model": None,
        "template_id": None,
        "capabilities": ["control"],
        "metadata": {},
        "state": fields.get("state", "ready"),
        "current_session_id": None,
        "implicit": False,
        "registered_at": 1,
        "connected_at": 2,
        "last_seen": 3,
        "online": online,
    }


async def test_an_agent_online_at_another_studio_is_online_here_until_that_studio_goes() -> None:
    cluster, _, registry = link()
    cluster._agent("studio-b", snapshot("x", online=True, name="Writer"))
    agent = registry.agents["x"]
    assert (agent.connection, agent.name, agent.capabilities) == (REMOTE, "Writer", ("control",))
    cluster._gone("studio-b")
    assert agent.connection is None


async def test_an_agent_connected_here_keeps_this_studios_view() -> None:
    cluster, _, registry = link()
    here = LiveAgent(id="x", registered_at=1, last_seen=1, name="Mine", connection=7)
    registry.add(here)
    cluster._agent("studio-b", snapshot("x", online=False, name="Theirs"))
    assert (here.connection, here.name) == (7, "Mine")
    cluster._gone("studio-b")
    assert here.connection == 7


async def test_a_studio_tells_of_its_own_agents_only() -> None:
    cluster, _, registry = link()
    said: list[dict[str, Any]] = []
    cluster._say = said.append  # type: ignore[method-assign]
    mine = LiveAgent(id="mine", registered_at=1, last_seen=1, connection=3)
    theirs = LiveAgent(id="theirs", registered_at=1, last_seen=1, connection=REMOTE)
    never = LiveAgent(id="never", registered_at=1, last_seen=1)
    for agent in (mine, theirs, never):
        registry.add(agent)
        cluster.agent_view(agent)
    assert [m["a"]["id"] for m in said] == ["mine"]
    mine.connection = None  # it left this Studio: the others hear it is offline
    cluster.agent_view(mine)
    assert said[-1]["a"] == {**said[-1]["a"], "id": "mine", "online": False}


async def test_an_agent_told_of_to_a_studio_that_joins_is_told_offline_when_it_leaves() -> None:
    cluster, _, registry = link()
    said: list[dict[str, Any]] = []
    cluster._say = said.append  # type: ignore[method-assign]
    mine = LiveAgent(id="mine", registered_at=1, last_seen=1, connection=3)
    registry.add(mine)
    cluster._take({"o": "studio-b", "k": "hello"})  # before its own view went out
    assert [(m["a"]["id"], m["a"]["online"]) for m in said if m["k"] == "agent"] == [("mine", True)]
    mine.connection = None
    cluster.agent_view(mine)
    assert (said[-1]["a"]["id"], said[-1]["a"]["online"]) == ("mine", False)
