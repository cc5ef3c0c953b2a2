"""The live state of agents and producers, kept in memory and mirrored to the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ..models import WORKING_STATES, AgentRecord, AgentStatus, UsageTotals, iso_ms
from ..store import UpsertAgent

# The `connection` of an agent connected to another Studio of the cluster (live/peers.py):
# online, but no connection of this one carries it.
REMOTE: Final = -1


@dataclass(slots=True)
class LiveAgent:
    """One agent's current state; the store holds the durable copy."""

    id: str
    registered_at: int
    last_seen: int
    name: str | None = None
    model: str | None = None
    template_id: str | None = None
    capabilities: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    state: str = "ready"
    last_event_at: int | None = None
    current_session_id: str | None = None
    implicit: bool = False
    event_count: int = 0
    error_count: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)
    connection: int | None = None
    # Every open connection that registered it, oldest first; `connection` is the newest. A
    # forked worker registers its parent's agent: when it leaves, the parent still carries it.
    carriers: list[int] = field(default_factory=list)
    connected_at: int | None = None
    reported_status: AgentStatus | None = None
    view_slot: int = -1  # which of the ingest service's view slots it was dealt, once it is

    @classmethod
    def from_record(cls, r: AgentRecord) -> LiveAgent:
        return cls(
            id=r.id,
            registered_at=r.registered_at,
            last_seen=r.last_seen,
            name=r.name,
            model=r.model,
            template_id=r.template_id,
            capabilities=r.capabilities,
            metadata=r.metadata,
            state=r.state,
            last_event_at=r.last_event_at,
            current_session_id=r.current_session_id,
            implicit=r.implicit,
            event_count=r.event_count,
            error_count=r.error_count,
        )

    def upsert_op(self, now_ms: int) -> UpsertAgent:
        """The write that stores this agent's registration fields."""
        return UpsertAgent(
            self.id,
            now_ms,
            name=self.name,
            model=self.model,
            template_id=self.template_id,
            capabilities=self.capabilities,
            metadata=self.metadata,
            state=self.state,
        )

    def status(self, now_ms: int, stall_after_ms: int) -> AgentStatus:
        if self.connection is None:
            return AgentStatus.OFFLINE
        if self.state in WORKING_STATES:
            quiet_since = max(self.last_event_at or 0, self.connected_at or 0)
            if now_ms - quiet_since > stall_after_ms:
                return AgentStatus.STALLED
        return AgentStatus.ONLINE

    def view(self, now_ms: int, stall_after_ms: int) -> dict[str, Any]:
        """Return the AgentView of the REST API and the live stream."""
        status = self.status(now_ms, stall_after_ms)
        usage = self.usage
        return {
            "id": self.id,
            "name": self.name or self.metadata.get("name") or self.id,
            "model": self.model,
            "template_id": self.template_id,
            "capabilities": list(self.capabilities),
            "metadata": self.metadata,
            "status": "offline" if status is AgentStatus.OFFLINE else "online",
            "health": status.value,
            "state": self.state,
            "stalled": status is AgentStatus.STALLED,
            "implicit": self.implicit,
            "current_session_id": self.current_session_id,
            "registered_at": iso_ms(self.registered_at),
            "connected_at": iso_ms(self.connected_at) if self.connection is not None else None,
            "last_seen": iso_ms(now_ms if self.connection is not None else self.last_seen),
            "last_event_at": iso_ms(self.last_event_at),
            "token_usage": usage.tokens(),
            "cost": usage.money(),
            "unpriced_tokens": usage.unpriced_tokens,
            "event_count": self.event_count,
            "error_count": self.error_count,
        }


@dataclass(slots=True)
class Producer:
    """A reliable-delivery client: what it handed over, and what is durable."""

    id: str
    accepted_seq: int
    durable_seq: int
    connection: int | None = None


class Registry:
    """Agents and producers by id; touched only from the event loop."""

    def __init__(self) -> None:
        self.agents: dict[str, LiveAgent] = {}
        self.producers: dict[str, Producer] = {}
        # Stored events of agents no longer known (deleted): no agent's count holds them.
        self.forgotten_events = 0
        # The usage of agents no longer known, by id: an agent that comes back has it again.
        # Its rows stay stored under its id, and the metrics filtered by that id sum them, as
        # the totals loaded at start do: an agent's usage is its id's, deleted or not.
        self.forgotten_usage: dict[str, UsageTotals] = {}

    def load(
        self,
        records: list[AgentRecord],
        usage: dict[str, UsageTotals],
        forgotten_events: int = 0,
    ) -> None:
        usage = dict(usage)
        for record in records:
            agent = LiveAgent.from_record(record)
            agent.usage = usage.pop(record.id, UsageTotals())
            self.agents[record.id] = agent
        self.forgotten_events = forgotten_events
        self.forgotten_usage = usage

    def add(self, agent: LiveAgent) -> None:
        """Know a new agent; one deleted before gets its usage back."""
        usage = self.forgotten_usage.pop(agent.id, None)
        if usage is not None:
            agent.usage = usage
        self.agents[agent.id] = agent

    def forget(self, agent_id: str) -> None:
        """Drop an agent, keeping its events in `events_total` (they stay stored) and its
        usage for its return."""
        agent = self.agents.pop(agent_id)
        self.forgotten_events += agent.event_count
        self.forgotten_usage[agent_id] = agent.usage

    def events_total(self) -> int:
        """Return how many events are stored, or numbered and about to be, without counting."""
        return self.forgotten_events + sum(a.event_count for a in self.agents.values())

    def counts(self, now_ms: int, stall_after_ms: int) -> dict[str, int]:
        online = working = stalled = offline = 0
        for agent in self.agents.values():
            status = agent.status(now_ms, stall_after_ms)
            if status is AgentStatus.OFFLINE:
                offline += 1
                continue
            online += 1
            if status is AgentStatus.STALLED:
                stalled += 1
            elif agent.state in WORKING_STATES:
                working += 1
        return {
            "online": online,
            "working": working,
            "stalled": stalled,
            "offline": offline,
            "total": len(self.agents),
        }
