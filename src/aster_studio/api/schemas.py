"""The shapes of the API's responses, for `/openapi.json`: what each route answers, and how.

The routes build their JSON themselves (several splice stored bytes in, for speed), so these
models validate nothing at run time: they only describe. `describe` writes them into the
generated document, with each route's media types and the errors it can answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import models_json_schema

from .guard import PUBLIC_PATHS

Time = str  # ISO 8601 UTC with milliseconds: `2025-12-13T02:04:05.123Z`
Object = dict[str, Any]


class _Shape(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


# ---- shared values ----


class TokenUsage(_Shape):
    """`total` counts each kind once: input, output and both cache counts; `reasoning` is a
    part of `output`."""

    input: int
    output: int
    total: int
    cache_read: int
    cache_creation: int
    reasoning: int


class Cost(_Shape):
    """USD; `amount` is null when none of the tokens had a price."""

    amount: float | None
    currency: Literal["USD"]
    unpriced_tokens: int = Field(0, description="present when some tokens had no price")


class ErrorDetail(_Shape):
    model_config = ConfigDict(extra="allow")  # a conflict says what it conflicts with

    code: str
    message: str


class ErrorEnvelope(_Shape):
    """What every REST error answers."""

    success: Literal[False]
    error: ErrorDetail


# ---- events ----


class EventItem(_Shape):
    """A stored event: its ids beside the event object as the agent sent it."""

    cursor: int
    timestamp: Time
    agent_id: str
    session_id: str | None
    channel: str
    type: str
    event_type: str
    client_timestamp: Time | None
    event: Object


class EventPage(_Shape):
    events: list[EventItem]
    cursor: int = Field(description="the newest cursor of the page, 0 if none")
    next_before: int | None = Field(description="`before` for the next page; null on the last")
    has_more: bool


class EventsSince(_Shape):
    events: list[EventItem]
    cursor: int
    next_cursor: int
    has_more: bool


class EventCount(_Shape):
    count: int


class StreamStats(_Shape):
    active_connections: int


# ---- agents ----


class AgentView(_Shape):
    id: str
    name: str
    model: str | None
    template_id: str | None
    capabilities: list[str]
    metadata: Object
    status: Literal["online", "offline"]
    health: Literal["online", "stalled", "offline"]
    state: str
    stalled: bool
    implicit: bool
    current_session_id: str | None
    registered_at: Time | None
    connected_at: Time | None
    last_seen: Time | None
    last_event_at: Time | None
    token_usage: TokenUsage
    cost: Cost
    unpriced_tokens: int
    event_count: int
    error_count: int


class AgentList(_Shape):
    agents: list[AgentView]
    total: int


class AgentConfig(_Shape):
    agent_id: str
    template_id: str
    llm_config: Object = Field(alias="model_config")
    tools: list[str]
    metadata: Object


class AgentRecord(_Shape):
    """An agent as the original console lists it."""

    id: str
    status: Literal["active", "disabled", "archived"]
    created_at: Time | None
    updated_at: Time | None
    config: AgentConfig
    metadata: Object


class AgentRecords(RootModel[list[AgentRecord]]):
    pass


class Breakpoint(_Shape):
    enabled: bool


class RemoteStatus(_Shape):
    agent_id: str
    state: str
    step_count: int
    last_sfp_index: int
    last_bookmark: None
    cursor: int
    breakpoint: Breakpoint


class RemoteAgent(_Shape):
    agent_id: str
    status: RemoteStatus
    metadata: Object


class RemoteStats(_Shape):
    remote_agents_count: int
    agents: list[RemoteAgent]


# ---- sessions and traces ----


class SessionView(_Shape):
    id: str
    agent_id: str
    agent_name: str
    status: str
    message_count: int
    event_count: int
    token_usage: TokenUsage
    cost: Cost
    unpriced_tokens: int
    created_at: Time | None
    updated_at: Time | None
    ended_at: Time | None
    metadata: Object


class SessionList(_Shape):
    sessions: list[SessionView]
    total: int
    has_more: bool


class Message(_Shape):
    id: str
    role: Literal["assistant"]
    content: str
    timestamp: Time | None


class SessionDetail(SessionView):
    messages: list[Message]
    messages_truncated: bool
    cost_by_model: dict[str, Cost]
    tokens_by_model: dict[str, TokenUsage]


class TraceSummary(_Shape):
    id: str
    name: str
    agent_id: str
    agent_name: str
    start_time: Time | None
    duration_ms: int
    status: Literal["running", "ok", "error"]
    span_count: int
    token_usage: TokenUsage
    cost: Cost
    error_message: str | None = Field(None, description="the last error's, when there was one")


class TraceList(_Shape):
    traces: list[TraceSummary]
    total: int
    has_more: bool


class SpanAttributes(_Shape):
    tool_name: str
    tool_id: str
    state: str


class ToolSpan(_Shape):
    id: str
    name: str
    type: Literal["tool"]
    start_time: Time | None
    end_time: Time | None
    duration_ms: int
    status: Literal["ok", "error"]
    attributes: SpanAttributes


class RootSpan(_Shape):
    id: str
    name: str
    type: Literal["agent"]
    start_time: Time | None
    duration_ms: int
    status: Literal["running", "ok", "error"]
    children: list[ToolSpan]


class TraceDetail(TraceSummary):
    root_span: RootSpan


# ---- metrics and pricing ----


class AgentCounts(_Shape):
    online: int
    working: int
    stalled: int
    offline: int
    total: int


class UsageWindow(_Shape):
    token_usage: TokenUsage
    cost: Cost
    unpriced_tokens: int
    requests: int


class Windows(_Shape):
    hour: UsageWindow = Field(alias="1h")
    day: UsageWindow = Field(alias="24h")


class Overview(_Shape):
    active_agents: int
    active_sessions: int
    total_requests: int
    token_usage: TokenUsage
    cost: Cost
    unpriced_tokens: int
    error_count: int
    error_rate: float
    avg_latency_ms: int
    period: str
    updated_at: Time
    agents: AgentCounts
    pending_requests: int
    events_per_second: float
    events_total: int
    windows: Windows
    latest_errors: list[EventItem]


class ModelTokens(TokenUsage):
    priced: bool


class TokenPoint(_Shape):
    timestamp: Time | None
    input: int
    output: int


class TokenMetrics(_Shape):
    period: str
    total: TokenUsage
    by_agent: dict[str, TokenUsage]
    by_model: dict[str, ModelTokens]
    trend: list[TokenPoint]
    cost: Cost
    unpriced_tokens: int


class CostPoint(_Shape):
    timestamp: Time | None
    amount: float | None


class CostMetrics(_Shape):
    period: str
    total: Cost
    by_agent: dict[str, Cost]
    by_model: dict[str, Cost]
    trend: list[CostPoint]
    unpriced_tokens: int
    unpriced_models: list[str]


class Latency(_Shape):
    """Whole milliseconds; with `count` 0 the zeros are no measurement."""

    p50: int
    p95: int
    p99: int
    avg: int
    max: int
    count: int


class Performance(_Shape):
    period: str
    ttft: Latency
    step_latency: Latency
    tpot: Latency
    tool_latency: dict[str, Latency]
    avg_loop_count: float
    request_count: int
    error_count: int
    error_rate: float


class Insight(_Shape):
    id: str
    type: str
    severity: str
    title: str
    description: str
    suggestion: str
    data: Object
    created_at: Time | None


class Insights(RootModel[list[Insight]]):
    pass


class PriceView(_Shape):
    model: str
    input_price_per_m: float
    output_price_per_m: float
    cache_read_price_per_m: float = Field(
        description="set, else the input price times the provider's factor"
    )
    cache_write_price_per_m: float = Field(
        description="set, else the input price times the provider's factor"
    )
    currency: str


class PriceTable(RootModel[dict[str, PriceView]]):
    pass


class PriceSet(_Shape):
    model: str
    pricing: PriceView


class PriceDeleted(_Shape):
    model: str
    deleted: bool


# ---- requests and control ----


class RequestView(_Shape):
    id: str
    kind: Literal["permission", "question", "tool_control"]
    agent_id: str
    session_id: str | None
    key: str
    status: Literal["pending", "decided", "expired"]
    stage: Literal["pending", "decided", "delivered", "acknowledged", "expired"]
    created_at: Time | None
    expires_at: Time | None
    request: Object
    response: Object | None
    decided_by: str | None
    decided_at: Time | None
    delivered_at: Time | None
    acknowledged_at: Time | None
    agent_response: Object | None
    event_cursor: int | None


class RequestList(_Shape):
    requests: list[RequestView]
    pending: int


class AuditEntry(_Shape):
    id: int
    timestamp: Time | None
    actor: str
    action: str
    request_id: str | None
    agent_id: str | None
    detail: Object


class AuditLog(_Shape):
    entries: list[AuditEntry]


# ---- login ----


class AuthState(_Shape):
    auth_enabled: bool
    authenticated: bool
    csrf_token: str | None


class LoggedIn(_Shape):
    csrf_token: str
    expires_in_s: int


class LoggedOut(_Shape):
    logged_out: bool


# ---- health (no envelope) ----


class StoreCheck(_Shape):
    status: Literal["healthy", "unhealthy"]
    message: str | None = None
    error: str | None = None
    latency_ms: float | None = None


class StoreHealth(StoreCheck):
    backend: str
    id: str = Field(description="the database's own id: another after a restart on another one")


class ClusterHealth(_Shape):
    """A Studio of a cluster (`--cluster`): how it stands with the others."""

    instance: str = Field(description="this Studio's name in the cluster: host:pid:random")
    redis: str = Field(description="the cluster's Redis, without its password")
    connected: bool
    peers: list[str] = Field(description="the other Studios heard from in the last 5 s")
    next_event_id: int
    held_runs: int = Field(description="runs of events waiting for an earlier one")
    published_events: int
    received_events: int
    filled_events: int = Field(description="events read from the database to fill holes")
    dropped_messages: int


class Healthz(_Shape):
    status: Literal["ok", "degraded"]
    version: str
    uptime_s: float
    store: StoreHealth
    write_queue: int
    agents_online: int
    cluster: ClusterHealth | None = Field(None, description="only on a Studio of a cluster")


class HealthChecks(_Shape):
    store: StoreCheck


class Health(_Shape):
    """The original Studio's health; `uptime` is in nanoseconds."""

    status: Literal["healthy", "degraded"]
    version: str
    uptime: int
    timestamp: Time | None
    checks: HealthChecks


# ---- which route answers what ----

# The `data` of each route's `{"success": true, "data": ...}`.
DATA: dict[tuple[str, str], type[BaseModel]] = {
    ("get", "/v1/dashboard/events"): EventPage,
    ("get", "/v1/dashboard/events/since/{cursor}"): EventsSince,
    ("get", "/v1/dashboard/events/count"): EventCount,
    ("get", "/v1/dashboard/events/stats"): StreamStats,
    ("get", "/v1/dashboard/agents"): AgentList,
    ("get", "/v1/dashboard/agents/{agent_id}"): AgentView,
    ("get", "/v1/agents"): AgentRecords,
    ("get", "/v1/agents/{agent_id}"): AgentRecord,
    ("patch", "/v1/agents/{agent_id}"): AgentRecord,
    ("get", "/v1/remote-agents/stats"): RemoteStats,
    ("get", "/v1/dashboard/sessions"): SessionList,
    ("get", "/v1/dashboard/sessions/{session_id}"): SessionDetail,
    ("get", "/v1/dashboard/traces"): TraceList,
    ("get", "/v1/dashboard/traces/{trace_id}"): TraceDetail,
    ("get", "/v1/dashboard/overview"): Overview,
    ("get", "/v1/dashboard/metrics/tokens"): TokenMetrics,
    ("get", "/v1/dashboard/metrics/costs"): CostMetrics,
    ("get", "/v1/dashboard/metrics/performance"): Performance,
    ("get", "/v1/dashboard/insights"): Insights,
    ("get", "/v1/dashboard/pricing"): PriceTable,
    ("put", "/v1/dashboard/pricing"): PriceSet,
    ("delete", "/v1/dashboard/pricing/{model}"): PriceDeleted,
    ("get", "/v1/dashboard/requests"): RequestList,
    ("get", "/v1/dashboard/requests/{request_id}"): RequestView,
    ("post", "/v1/dashboard/requests/{request_id}/decision"): RequestView,
    ("post", "/v1/dashboard/requests/{request_id}/answer"): RequestView,
    ("post", "/v1/dashboard/agents/{agent_id}/tools/{call_id}/control"): RequestView,
    ("get", "/v1/dashboard/audit"): AuditLog,
    ("get", "/v1/auth/session"): AuthState,
    ("post", "/v1/auth/login"): LoggedIn,
    ("post", "/v1/auth/logout"): LoggedOut,
}

# Bodies sent bare, as the original Studio's health checks and Prometheus expect them.
BARE: dict[tuple[str, str], dict[str, type[BaseModel]]] = {
    ("get", "/healthz"): {"200": Healthz, "503": Healthz},
    ("get", "/health"): {"200": Health},
}

TEXT: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/metrics"): {"text/plain": "Prometheus text format 0.0.4 (`version=0.0.4`)"},
    ("get", "/v1/dashboard/events/export"): {
        "application/x-ndjson": "one event item (as in /v1/dashboard/events) a line",
        "text/csv": "cursor, timestamp, agent_id, session_id, channel, event_type, severity, "
        "event (the event object as JSON), after a header row",
    },
}

ERRORS: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/v1/dashboard/agents/{agent_id}"): {"404": "No such agent"},
    ("get", "/v1/agents/{agent_id}"): {"404": "No such agent"},
    ("patch", "/v1/agents/{agent_id}"): {"404": "No such agent"},
    ("delete", "/v1/agents/{agent_id}"): {"404": "No such agent"},
    ("get", "/v1/dashboard/sessions/{session_id}"): {"404": "No such session"},
    ("get", "/v1/dashboard/traces/{trace_id}"): {"404": "No such trace"},
    ("delete", "/v1/dashboard/pricing/{model}"): {"404": "No price for this model"},
    ("get", "/v1/dashboard/requests/{request_id}"): {"404": "No such request"},
    ("post", "/v1/dashboard/requests/{request_id}/decision"): {
        "404": "No open request of this id",
        "410": "The request expired",
    },
    ("post", "/v1/dashboard/requests/{request_id}/answer"): {
        "404": "No open request of this id",
        "410": "The request expired",
    },
    ("post", "/v1/dashboard/agents/{agent_id}/tools/{call_id}/control"): {
        "404": "No such agent",
        "409": "The call is not running, or the agent cannot be reached",
    },
    ("post", "/v1/auth/login"): {"401": "Wrong console token", "403": "Cross-origin login"},
}


def _envelope(data: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"type": "boolean", "const": True}, "data": data},
    }


def _error(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def describe(app: FastAPI) -> None:
    """Complete the generated document with what the routes answer: each success body's
    schema and media type, and the errors (a 400 with the error envelope, not the
    framework's 422 `HTTPValidationError`, which the API never sends)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        models: set[type[BaseModel]] = {ErrorEnvelope, *DATA.values()}
        models.update(m for codes in BARE.values() for m in codes.values())
        refs, defs = models_json_schema(
            [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components.update(defs.get("$defs", {}))
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _complete(operation, (method, path), refs)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], key: tuple[str, str], refs: Mapping[Any, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    success = next((c for c in responses if c.startswith("2")), "200")
    if key in DATA:
        data = refs[(DATA[key], "serialization")]
        responses[success] = {
            "description": responses.get(success, {}).get("description", "Successful Response"),
            "content": {"application/json": {"schema": _envelope(data)}},
        }
    for code, model in BARE.get(key, {}).items():
        body = {"application/json": {"schema": refs[(model, "serialization")]}}
        description = "Successful Response" if code == "200" else "The store fails"
        responses[code] = {"description": description, "content": body}
    if key in TEXT:
        responses[success] = {
            "description": "Successful Response",
            "content": {
                media: {"schema": {"type": "string", "description": text}}
                for media, text in TEXT[key].items()
            },
        }
    if responses.pop("422", None) is not None:
        responses["400"] = _error("Bad request")
    for code, description in ERRORS.get(key, {}).items():
        responses[code] = _error(description)
    if key[1] not in PUBLIC_PATHS:  # what the guard answers when auth is on
        responses.setdefault("401", _error("Auth is on, and no valid credential came"))
        responses.setdefault(
            "403", _error("Cross-origin, or a console session's write without its CSRF token")
        )
    for parameter in operation.get("parameters", ()):
        if parameter.get("name") == "limit":  # any text is taken (not a number: the default)
            parameter["schema"] = {"type": "integer", "minimum": 1, "title": "Limit"}


__all__ = ["DATA", "ErrorEnvelope", "describe"]
