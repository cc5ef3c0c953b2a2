"""Values that cross module boundaries: stored records, filters and usage figures."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from .errors import BadRequest


def iso_ms(ms: int | None) -> str | None:
    """Format epoch milliseconds as ISO 8601 UTC with milliseconds (`...T02:04:05.123Z`)."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


# The seconds ISO 8601 can show, years 1 to 9999: a time outside (only a database written
# before clients' times were checked holds one) shows as the nearest of them.
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # Events arrive in bursts within the same second: format each second once.
    t = datetime.fromtimestamp(min(max(seconds, _FIRST_SECOND), _LAST_SECOND), UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


class AgentStatus(StrEnum):
    """Whether an agent has a live connection, and whether a working agent went quiet."""

    ONLINE = "online"
    STALLED = "stalled"
    OFFLINE = "offline"


WORKING_STATES = frozenset({"working", "running"})


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent as stored."""

    id: str
    name: str | None
    model: str | None
    template_id: str | None
    capabilities: tuple[str, ...]
    metadata: dict[str, Any]
    state: str
    registered_at: int
    last_seen: int
    last_event_at: int | None
    current_session_id: str | None
    implicit: bool
    event_count: int = 0
    error_count: int = 0


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored, with its counts of events and of errors among them."""

    id: str
    agent_id: str
    status: str
    created_at: int
    updated_at: int
    ended_at: int | None
    metadata: dict[str, Any]
    event_count: int
    error_count: int = 0


def session_outcome(status: str, error_count: int) -> str:
    """Return a session's trace status: `running` while it is active, `ok` once completed
    without an error (`counts_as_error`), else `error` (failed, interrupted, or errors)."""
    if status == "active":
        return "running"
    return "ok" if status == "completed" and not error_count else "error"


class StoredEvent(NamedTuple):
    """One stored event; `id` is the global cursor (a NamedTuple: one is built per event)."""

    id: int
    agent_id: str
    session_id: str | None
    channel: str
    event_type: str
    severity: str | None
    ts: int
    client_ts: int | None
    payload: bytes  # the event object as received, as JSON


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A control request (permission, question or tool control) and its answer."""

    id: str
    kind: str  # "permission", "question" or "tool_control"
    agent_id: str
    session_id: str | None
    key: str  # the call id or the agent's request id
    status: str  # "pending", "decided" or "expired"
    created_at: int
    expires_at: int | None
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    decided_by: str | None = None
    decided_at: int | None = None
    delivered_at: int | None = None
    acknowledged_at: int | None = None
    agent_response: dict[str, Any] | None = None
    event_cursor: int | None = None


@dataclass(frozen=True, slots=True)
class AgentKey:
    """An agent key as stored: only its hash, never the key itself."""

    id: str
    name: str
    pattern: str  # agent ids this key may write for (fnmatch), "*" for any
    hash: str
    created_at: int
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A browser logged in to the console, as stored: the SHA-256 of its session id, never the
    id itself (the cookie), so a copy of the database lets nobody in. It outlives neither its
    expiry (epoch ms) nor the credential it logged in with (the console token's hash)."""

    id_hash: str
    csrf: str
    credential: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit log."""

    id: int
    ts: int
    actor: str
    action: str
    request_id: str | None
    agent_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Conditions on events; every field narrows, None means any."""

    agent_ids: tuple[str, ...] | None = None
    session_ids: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    event_types: tuple[str, ...] | None = None
    severities: tuple[str, ...] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one `token_usage` event and its cost (None when unpriced).

    `input` is the input read fresh, apart from the cache's (`cache_read`, `cache_creation`);
    `reasoning` is the part of `output` the model spent reasoning (priced with it, counted
    once). `priceable` is false when the split into kinds is unknown (a total alone): such
    tokens are counted, as input, but unpriced, since the price depends on the split.
    """

    model: str | None
    input: int
    output: int
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0
    cost: float | None = None
    priceable: bool = True

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_creation


# A cost past this (USD) is no cost: ten billion tokens at the largest price the pricing API
# takes (MAX_PRICE_PER_M) stay below it, and a sum of costs must stay a finite float.
MAX_COST = 1e15


def money(cost: float, tokens: int, unpriced_tokens: int) -> dict[str, Any]:
    """A cost as the API gives it, in USD: `amount` is null when none of the tokens had a price
    (never an unpriced $0), and `unpriced_tokens` says how many had none."""
    if not math.isfinite(cost):  # rows priced before prices were bounded: the largest sum
        cost = MAX_COST if cost > 0 else 0.0
    amount = None if tokens and unpriced_tokens >= tokens else round(cost, 10)
    if not unpriced_tokens:
        return {"amount": amount, "currency": "USD"}
    return {"amount": amount, "currency": "USD", "unpriced_tokens": unpriced_tokens}


class UsageFigures:
    """Tokens and money as the API shows them, for a running total or an aggregated row."""

    __slots__ = ()
    input: int
    output: int
    cache_read: int
    cache_creation: int
    reasoning: int
    cost: float
    unpriced_tokens: int

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_creation

    def tokens(self) -> dict[str, int]:
        """`total` adds every kind once: `reasoning` is a part of `output`."""
        return {
            "input": self.input,
            "output": self.output,
            "total": self.total,
            "cache_read": self.cache_read,
            "cache_creation": self.cache_creation,
            "reasoning": self.reasoning,
        }

    def money(self) -> dict[str, Any]:
        return money(self.cost, self.total, self.unpriced_tokens)


@dataclass(slots=True)
class UsageTotals(UsageFigures):
    """Accumulated tokens and cost; unpriced tokens are kept apart, never costed as $0."""

    input: int = 0
    output: int = 0
    cost: float = 0.0
    unpriced_tokens: int = 0
    requests: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, rows: Iterable[UsageRow]) -> UsageTotals:
        """Return the totals of aggregated rows (a session's by model, say), as one row over
        the same usage would give them."""
        totals = cls()
        costs = []
        for row in rows:
            totals.input += row.input
            totals.output += row.output
            totals.cache_read += row.cache_read
            totals.cache_creation += row.cache_creation
            totals.reasoning += row.reasoning
            totals.unpriced_tokens += row.unpriced_tokens
            totals.requests += row.requests
            costs.append(row.cost)
        # SQLite's `total` adds with error compensation: so does `fsum`, not `sum`.
        totals.cost = math.fsum(costs)
        return totals

    def add(self, usage: Usage) -> None:
        self.input += usage.input
        self.output += usage.output
        self.cache_read += usage.cache_read
        self.cache_creation += usage.cache_creation
        self.reasoning += usage.reasoning
        self.requests += 1
        if usage.cost is None:
            self.unpriced_tokens += usage.total
        else:
            self.cost += usage.cost


# Rates of cached input, as fractions of the input rate, by provider (the first whose name
# holds one of the words): what each bills a cache read and a cache write. Anthropic bills a
# read a tenth of the input rate and a five-minute write 1.25 times it; OpenAI bills cached
# input at half the input rate and nothing extra to write it; DeepSeek a cache hit at a tenth;
# Google a cached token at a quarter. A model of none of these pays the input rate for both.
CACHE_RATES: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("claude", "anthropic"), 0.1, 1.25),
    (("gpt", "openai", "o1", "o3", "o4"), 0.5, 1.0),
    (("deepseek",), 0.1, 1.0),
    (("gemini",), 0.25, 1.0),
)

# The largest price (per million tokens) the pricing API takes: a thousand times the dearest
# model's. Beyond it a price is a typo, and costs could overflow a float.
MAX_PRICE_PER_M = 1_000_000.0


def cache_rates(model: str) -> tuple[float, float]:
    """The default (read, write) rates of a model's cached input, as fractions of its input."""
    lowered = model.lower()
    for words, read, write in CACHE_RATES:
        if any(w in lowered for w in words):
            return read, write
    return 1.0, 1.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD (or `currency`) per million tokens for one model; the cache rates, when None, are
    the input rate times the model's provider's factors (`cache_rates`)."""

    model: str
    input_per_m: float
    output_per_m: float
    currency: str = "USD"
    cache_read_per_m: float | None = None
    cache_write_per_m: float | None = None

    @property
    def in_usd(self) -> bool:
        """Whether costs may be figured from it: they are added up in US dollars."""
        return self.currency.upper() == "USD"

    def cache_prices(self) -> tuple[float, float]:
        """The (read, write) prices per million cached input tokens in force."""
        read, write = self.cache_read_per_m, self.cache_write_per_m
        if read is None or write is None:
            read_x, write_x = cache_rates(self.model)
            read = self.input_per_m * read_x if read is None else read
            write = self.input_per_m * write_x if write is None else write
        return read, write

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_creation: int = 0
    ) -> float:
        cost = input_tokens * self.input_per_m + output_tokens * self.output_per_m
        if cache_read or cache_creation:
            read, write = self.cache_prices()
            cost += cache_read * read + cache_creation * write
        return cost / 1e6

    def to_api(self) -> dict[str, Any]:
        read, write = self.cache_prices()
        return {
            "model": self.model,
            "input_price_per_m": self.input_per_m,
            "output_price_per_m": self.output_per_m,
            "cache_read_price_per_m": read,
            "cache_write_price_per_m": write,
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class UsageRow(UsageFigures):
    """One aggregated usage figure (by model, agent or time bucket)."""

    key: str | int | None
    input: int
    output: int
    cost: float
    unpriced_tokens: int
    requests: int
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which usage rows to aggregate, and how to group them."""

    start_ms: int
    end_ms: int
    agent_id: str | None = None
    session_id: str | None = None
    model: str | None = None  # "" selects the usage that names no model
    group_by: str | None = None  # "model", "agent", "session" or None
    bucket_ms: int | None = None  # group by time bucket instead


# Severities below error: an `error` event of one of these is a warning or a note. With any
# other severity, or none, it counts as an error, in every count the Studio shows.
MINOR_SEVERITIES = ("debug", "info", "notice", "warn", "warning")


def counts_as_error(event_type: str, severity: str | None) -> bool:
    """Types match whatever their case, as the filters do: `Error` is an error event."""
    return (event_type == "error" or event_type.lower() == "error") and (
        severity is None or severity.lower() not in MINOR_SEVERITIES
    )


# The largest integer SQLite stores: cursors, times and offsets past it are refused with a 400,
# not left to fail in the store.
INT64_MAX = (1 << 63) - 1


def parse_time_ms(value: str, name: str) -> int:
    """Read an API time (ISO 8601, or epoch milliseconds); raise BadRequest naming `name`."""
    text = value.strip()
    if text.isascii() and text.isdigit():  # not `²` or `①`: int() refuses those
        if len(text) > 18 and int(text) > INT64_MAX:
            raise BadRequest(f"'{name}' is out of range: at most {INT64_MAX} ms")
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"'{name}' must be an ISO 8601 time or epoch ms, got {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
