"""The storage interface: write operations, their results, and the Store protocol."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..models import (
    AgentKey,
    AgentRecord,
    AuditRecord,
    ConsoleSession,
    EventFilter,
    Price,
    RequestRecord,
    SessionRecord,
    StoredEvent,
    Usage,
    UsageQuery,
    UsageRow,
    UsageTotals,
)

# ---- write operations, applied in order inside one transaction by the single writer ----


@dataclass(frozen=True, slots=True)
class UpsertAgent:
    """Create or update an agent from a `register` (or implicitly, from its first event)."""

    id: str
    ts: int
    name: str | None = None
    model: str | None = None
    template_id: str | None = None
    capabilities: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    state: str | None = None
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class EditAgent:
    """Rename an agent or replace its metadata (a person's edit): nothing else of its row,
    neither its last contact nor whether it registered, changes."""

    id: str
    name: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AgentState:
    """Record an agent's current state, last contact and open session."""

    id: str
    state: str
    last_seen: int
    current_session_id: str | None


@dataclass(frozen=True, slots=True)
class UpsertSession:
    id: str
    agent_id: str
    ts: int
    created_at: int | None = None
    status: str = "active"
    metadata: dict[str, Any] = field(default_factory=dict)
    implicit: bool = False
    # A stored session is changed only if one of these agents owns it (None: any). An agent key
    # writes for its agents only: not into another's session, nor taking it over.
    owners: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class EndSession:
    id: str
    status: str
    ts: int
    owners: tuple[str, ...] | None = None  # as UpsertSession's


class RecordUsage(NamedTuple):
    """Store the token usage of the event `event_id`; the writer prices it (prices are its state).

    Events themselves are written as `StoredEvent` rows, numbered by the loop that received them.
    """

    event_id: int
    agent_id: str
    session_id: str | None
    ts: int
    usage: Usage


@dataclass(frozen=True, slots=True)
class MarkProducer:
    """Record that a producer's messages up to `seq` are handled (reliable delivery): the last
    op of the unit of the message `seq`, after its `ops` other ops."""

    producer_id: str
    seq: int
    ops: int = 0


@dataclass(frozen=True, slots=True)
class SetPrice:
    price: Price
    ts: int


@dataclass(frozen=True, slots=True)
class DeletePrice:
    model: str


@dataclass(frozen=True, slots=True)
class DeleteAgent:
    id: str


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """Create or replace a control request row."""

    record: RequestRecord


@dataclass(frozen=True, slots=True)
class MarkObserved:
    """Record that the control service has written what every event up to `through` asks
    for (its requests and their acknowledgements): a restart replays only the events past it."""

    through: int


@dataclass(frozen=True, slots=True)
class AddAudit:
    """Append one row to the audit log."""

    ts: int
    actor: str
    action: str
    request_id: str | None
    agent_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


WriteOp = (
    UpsertAgent
    | EditAgent
    | AgentState
    | UpsertSession
    | EndSession
    | StoredEvent
    | RecordUsage
    | MarkProducer
    | SetPrice
    | DeletePrice
    | DeleteAgent
    | SaveRequest
    | MarkObserved
    | AddAudit
)


@dataclass(slots=True)
class CommitResult:
    """What one write transaction made durable."""

    events: list[StoredEvent] = field(default_factory=list)
    usage: list[tuple[str, Usage]] = field(default_factory=list)  # (agent id, priced usage)
    producers: dict[str, int] = field(default_factory=dict)
    # Producers whose writes the store refused (the pipeline's): they must resend.
    failed_producers: list[str] = field(default_factory=list)


class Store(Protocol):
    """A storage backend; writes come from one writer thread, reads from any thread."""

    def open(self) -> None: ...

    def check_startable(self) -> None:
        """Raise what `open` would for the likeliest reasons a server cannot start (another
        Studio holds the database: DatabaseInUse; a newer schema: MigrationError), keeping
        nothing open: a server checks before it listens."""
        ...

    def open_beside_studio(self) -> None:
        """Open for the command line's keys and secrets while a running Studio holds the
        database (`open` raised DatabaseInUse)."""
        ...

    def close(self) -> None: ...

    def write(self, ops: list[WriteOp]) -> CommitResult: ...

    def reserve_event_ids(self) -> int:
        """Return the first event id this process may hand out, and reserve ids past it.

        Events are numbered (and shown live) before they are committed, so a crash can lose
        ids that subscribers have seen. The reservation is durable and kept ahead by `write`,
        so ids handed out after a crash are past every id handed out before it.
        """
        ...

    def release_event_ids(self) -> None:
        """After a clean stop (every numbered event committed): the next run continues at once."""
        ...

    def ping(self) -> None: ...

    def describe(self) -> str: ...

    @property
    def store_id(self) -> str:
        """This database's own id (hex), the same across restarts, another for another one."""
        ...

    def load_agents(self) -> list[AgentRecord]:
        """Every agent, with its counts and its last contact: `last_seen` is the later of the
        stored one and its newest event (an event is contact, but writes no `last_seen`)."""
        ...

    def forgotten_events(self) -> int:
        """How many stored events have no agent's row to count them: their agent was deleted.

        Read at start-up, beside `load_agents`: with the agents' counts it makes every stored
        event, without counting them.
        """
        ...

    def usage_by_agent(self) -> dict[str, UsageTotals]: ...

    def producer_seq(self, producer_id: str) -> int: ...

    def prices(self) -> list[Price]: ...

    def active_sessions_by_agent(self) -> dict[str, int]:
        """How many sessions of each agent are active (neither ended nor failed)."""
        ...

    def list_sessions(
        self,
        *,
        status: str | None,
        agent_id: str | None,
        limit: int,
        offset: int,
        outcome: str | None = None,
        connected: Collection[str] | None = None,
    ) -> tuple[list[SessionRecord], int]:
        """A page of sessions, most recently active first, and how many match in all.

        With `connected` (the agents connected now), status `active` keeps the sessions not
        ended whose agent is connected, and `suspended` also those whose agent is not.

        `outcome` keeps the sessions of one trace status (`session_outcome`: running, ok or
        error), filtered before paging.
        """
        ...

    def get_session(self, session_id: str) -> SessionRecord | None: ...

    def session_usage(self, session_ids: list[str]) -> dict[str, UsageTotals]: ...

    def events_before(
        self, flt: EventFilter, before: int | None, limit: int
    ) -> list[StoredEvent]: ...

    def events_after(self, flt: EventFilter, after: int, limit: int) -> list[StoredEvent]: ...

    def count_events(self, flt: EventFilter) -> int: ...

    def usage_rows(self, query: UsageQuery) -> list[UsageRow]: ...

    def usage_of_events(self, first_id: int, last_id: int) -> list[tuple[int, str, Usage]]:
        """The priced usage of the events `first_id` to `last_id`: (event id, agent id, usage),
        in id order (a Studio of a cluster counts the usage of events it read, not heard of)."""
        ...

    def event_counts_by_type(self, start_ms: int, end_ms: int) -> dict[str, int]: ...

    def list_requests(
        self, *, status: str | None, agent_id: str | None, kind: str | None, limit: int
    ) -> list[RequestRecord]: ...

    def add_key(self, key: AgentKey) -> None: ...

    def revoke_key(self, key_id: str, ts: int) -> bool: ...

    def agent_keys(self) -> list[AgentKey]: ...

    def get_secret(self, name: str) -> str | None: ...

    def set_secret(self, name: str, value: str, ts: int) -> None: ...

    def add_secret(self, name: str, value: str, ts: int) -> str:
        """Store `value` as secret `name` unless one is stored already; return the one
        stored (Studios of a cluster starting at once agree on one)."""
        ...

    def add_console_session(self, session: ConsoleSession, now_ms: int) -> None:
        """Store a console login session, dropping those expired by `now_ms` in the same write
        (no other write removes them)."""
        ...

    def get_console_session(self, id_hash: str, now_ms: int) -> ConsoleSession | None:
        """The console session of this id hash, unless it is gone or expired by `now_ms`."""
        ...

    def delete_console_session(self, id_hash: str) -> None:
        """End a console session (a logout): every Studio on the database refuses it."""
        ...

    def console_sessions(self, now_ms: int) -> list[ConsoleSession]:
        """Every console session not expired by `now_ms`."""
        ...

    def open_requests(self) -> list[RequestRecord]: ...

    def unobserved_events(self, event_types: Collection[str]) -> list[StoredEvent]:
        """The stored events of `event_types` past the last `MarkObserved`, oldest first.

        The control service writes a request after its event commits, in a later transaction:
        a crash in between leaves the event without its request, and these are the events
        whose requests may be missing.
        """
        ...

    def get_request(self, request_id: str) -> RequestRecord | None: ...

    def audit(
        self, *, agent_id: str | None, request_id: str | None, limit: int
    ) -> list[AuditRecord]: ...
