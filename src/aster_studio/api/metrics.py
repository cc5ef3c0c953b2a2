"""Overview, token/cost/performance metrics, traces and insights, computed from stored data."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from aster_studio_sdk.protocol import parse_timestamp_ms

from ..app import Studio
from ..errors import BadRequest, NotFound
from ..live.bus import event_items
from ..models import (
    INT64_MAX,
    MINOR_SEVERITIES,
    EventFilter,
    SessionRecord,
    StoredEvent,
    UsageFigures,
    UsageQuery,
    UsageRow,
    UsageTotals,
    counts_as_error,
    iso_ms,
    parse_time_ms,
    session_outcome,
)
from ._common import BUCKETS_MS, JSONBody, clamp_limit, ok, ok_raw, period_ms
from .events import with_type_inside

SCAN_LIMIT = 50_000
# The key of the usage without a model in `by_model`, and the `model` filter that selects it.
UNKNOWN_MODEL = "(unknown)"
TOOL_EVENT_TYPES = ("tool:start", "tool:end", "tool:error", "tool:canceled")


def _money(row: UsageFigures | None) -> dict[str, Any]:
    return (row or UsageTotals()).money()


def _tokens(row: UsageFigures | None) -> dict[str, int]:
    return (row or UsageTotals()).tokens()


def percentiles(values: list[float]) -> dict[str, int]:
    """p50/p95/p99/avg/max in whole ms; the sorted value at index n*p/100, as the original.

    With no values these are 0, as the original's console needs numbers; `count` (ours) tells
    that apart from measured zeros.
    """
    if not values:
        return {"p50": 0, "p95": 0, "p99": 0, "avg": 0, "max": 0, "count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def at(p: int) -> int:
        return round(ordered[min(n * p // 100, n - 1)])

    return {
        "p50": at(50),
        "p95": at(95),
        "p99": at(99),
        "avg": round(sum(ordered) / n),
        "max": round(ordered[-1]),
        "count": n,
    }


# A duration (ms) past this, about three years, is no duration: an agent's garbage must not
# reach the percentiles, which the API writes as integers.
MAX_DURATION_MS = 1e11


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if abs(number) <= MAX_DURATION_MS else None


def tool_spans(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """Pair `tool:start` with its end (`tool:end`, `tool:error`, `tool:canceled`) by call id.

    A span starts when its start was received. Its length is the agent's own measure where it
    gave one: the end's `duration_ms`, else its call's `started_at` to `updated_at` (as the
    event catalogue has them), else the difference of the two events' own times. Only without
    any is it the difference of their receive times, which a batch or a slow link shrinks or
    stretches.
    """
    spans: dict[str, dict[str, Any]] = {}
    client_starts: dict[str, int | None] = {}  # the agent's own time of each start
    call_starts: dict[str, int | None] = {}  # the call's `started_at` at its start
    order: list[str] = []
    for event in events:
        if not event.event_type.startswith("tool:"):
            continue
        body = orjson.loads(event.payload)
        call = body.get("call") if isinstance(body.get("call"), dict) else {}
        call_id = str(call.get("id") or body.get("call_id") or body.get("tool_id") or "")
        if not call_id:
            continue
        span = spans.get(call_id)
        if span is None:
            span = {
                "id": call_id,
                "name": str(call.get("name") or body.get("tool_name") or "tool"),
                "start_ms": event.ts,
                "end_ms": None,
                "state": "executing",
                "arguments": call.get("arguments"),
                "result": None,
                "error": None,
            }
            spans[call_id] = span
            client_starts[call_id] = event.client_ts
            call_starts[call_id] = parse_timestamp_ms(call.get("started_at"))
            order.append(call_id)
        kind = event.event_type
        if kind in ("tool:end", "tool:error", "tool:canceled"):
            measured = _num(body.get("duration_ms"))
            if measured is None:
                measured = _num(call.get("duration_ms"))
            begun = parse_timestamp_ms(call.get("started_at")) or call_starts[call_id]
            finished = parse_timestamp_ms(call.get("updated_at"))
            if measured is None and begun is not None and finished is not None:
                measured = float(finished - begun)
            started = client_starts[call_id]
            if measured is None and started is not None and event.client_ts is not None:
                measured = float(event.client_ts - started)
            ended = event.ts
            if measured is not None and measured >= 0:
                ended = span["start_ms"] + round(measured)
            span["end_ms"] = ended
            span["state"] = {"tool:error": "failed", "tool:canceled": "canceled"}.get(
                kind, str(call.get("state") or "completed")
            )
            span["result"] = call.get("result")
            span["error"] = body.get("error") or call.get("error")
    return [spans[i] for i in order]


def error_rate(errors: int, requests: int) -> float:
    """Errors per model call; with errors and no calls (the model API failing before any
    usage came), 1.0: every card and finding reads the same rate."""
    if not requests:
        return 1.0 if errors else 0.0
    return round(errors / requests, 4)


# A figure that took this long to compute is reused for REUSE_FACTOR times as long (at most
# REUSE_MAX_S): on a big store the overview scans its window's events (1.2 to 2.1 s at 3.6 M),
# and every open tab polling it kept a core busy; on a small one nothing is reused.
SLOW_S = 0.5
REUSE_FACTOR = 5
REUSE_MAX_S = 10.0
REUSE_KEPT = 256


class Reuse:
    """Reuse what a slow route computed lately, and compute it once for the requests that come
    while it runs: its figures may then be up to a few seconds old, as its `updated_at` says."""

    def __init__(self) -> None:
        self._done: dict[Hashable, tuple[float, Response]] = {}
        self._running: dict[Hashable, asyncio.Future[Response]] = {}

    def __call__(
        self, route: Callable[..., Awaitable[Response]]
    ) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(route)
        async def reused(**params: Any) -> Response:
            key = (route.__name__, tuple(sorted(params.items())))
            started = time.monotonic()
            done = self._done.get(key)
            if done is not None and done[0] > started:
                return _copy(done[1])
            running = self._running.get(key)
            if running is not None:
                return _copy(await asyncio.shield(running))
            task = self._running[key] = asyncio.ensure_future(route(**params))
            # Gone when done, even if every request for it went away meanwhile.
            task.add_done_callback(lambda _: self._running.pop(key, None))
            response = await asyncio.shield(task)
            took = time.monotonic() - started
            if took >= SLOW_S and response.status_code == 200:
                if len(self._done) >= REUSE_KEPT:
                    now = time.monotonic()
                    self._done = {k: v for k, v in self._done.items() if v[0] > now}
                if len(self._done) < REUSE_KEPT:
                    until = time.monotonic() + min(took * REUSE_FACTOR, REUSE_MAX_S)
                    self._done[key] = (until, response)
            return response

        return reused


def _copy(response: Response) -> Response:
    """A response of the same body to send again (a Response is sent once)."""
    return JSONBody(response.body, status_code=response.status_code)


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    store = studio.store
    reuse = Reuse()

    async def usage(start: int, end: int, **kw: Any) -> list[UsageRow]:
        return await studio.run_sync(store.usage_rows, UsageQuery(start, end, **kw))

    async def error_count(start: int, end: int, agent_id: str | None = None) -> int:
        """The `error` events of a period but those of a minor severity (`counts_as_error`)."""
        agents = (agent_id,) if agent_id else None
        flt = EventFilter(agent_ids=agents, event_types=("error",), start_ms=start, end_ms=end)
        minor = replace(flt, severities=MINOR_SEVERITIES)
        return await studio.run_sync(lambda: store.count_events(flt) - store.count_events(minor))

    async def scan(flt: EventFilter) -> list[StoredEvent]:
        """The newest SCAN_LIMIT matching events, oldest first: a window's latest figures (a
        slowdown now) are what is looked for; the oldest were read, and it never showed."""
        newest = await studio.run_sync(store.events_before, flt, None, SCAN_LIMIT)
        return newest[::-1]

    async def tool_latency(
        start: int, end: int, agent_ids: tuple[str, ...] | None
    ) -> dict[str, list[float]]:
        """Durations (ms) of the finished tool calls of a period, by tool name."""
        tools = await scan(
            EventFilter(
                agent_ids=agent_ids,
                event_types=TOOL_EVENT_TYPES,
                start_ms=start,
                end_ms=end,
            )
        )
        latency: dict[str, list[float]] = defaultdict(list)
        for span in tool_spans(tools):
            if span["end_ms"] is not None:
                latency[span["name"]].append(span["end_ms"] - span["start_ms"])
        return latency

    async def window_summary(start: int, end: int) -> dict[str, Any]:
        rows = await usage(start, end)
        row = rows[0] if rows else None
        return {
            "token_usage": _tokens(row),
            "cost": _money(row),
            "unpriced_tokens": row.unpriced_tokens if row else 0,
            "requests": row.requests if row else 0,
        }

    @api.get("/v1/dashboard/overview", summary="Headline figures for a period")
    @reuse
    async def overview(period: str = Query("24h", description="1h, 24h, 7d or 30d")) -> Response:
        now = studio.clock()
        start = now - period_ms(period)
        summary = await window_summary(start, now)
        errors = await error_count(start, now)
        requests = summary["requests"]
        steps = await scan(EventFilter(event_types=("step_complete",), start_ms=start, end_ms=now))
        durations = [
            d for d in (_num(orjson.loads(e.payload).get("duration_ms")) for e in steps) if d
        ]
        # Active: not ended, and its agent is connected. An agent that went away without
        # ending its sessions (the original document has no end_session) has none running.
        by_agent = await studio.run_sync(store.active_sessions_by_agent)
        online = studio.registry.agents
        active_sessions = sum(
            n
            for agent_id, n in by_agent.items()
            if (a := online.get(agent_id)) is not None and a.connection is not None
        )
        latest = await studio.run_sync(
            store.events_before, EventFilter(event_types=("error",)), None, 10
        )
        counts = studio.registry.counts(now, studio.stall_after_ms)
        data = {
            "active_agents": counts["online"],
            "active_sessions": active_sessions,
            "total_requests": requests,
            "token_usage": summary["token_usage"],
            "cost": summary["cost"],
            "unpriced_tokens": summary["unpriced_tokens"],
            "error_count": errors,
            "error_rate": error_rate(errors, requests),
            "avg_latency_ms": round(sum(durations) / len(durations)) if durations else 0,
            "period": period,
            "updated_at": iso_ms(now),
            "agents": counts,
            "pending_requests": studio.control.pending_count,
            "events_per_second": round(studio.ingest.rate.per_second(), 2),
            # Not the newest cursor: cursors skip ahead after a crash.
            "events_total": studio.registry.events_total(),
            "windows": {
                "1h": await window_summary(now - 3_600_000, now),
                "24h": await window_summary(now - 86_400_000, now),
            },
        }
        body = orjson.dumps(data)
        return ok_raw(
            body[:-1]
            + b',"latest_errors":['
            + b",".join(event_items(with_type_inside(latest)))
            + b"]}"
        )

    def _period(
        period: str, start: str | None = None, end: str | None = None
    ) -> tuple[int, int, int]:
        """The window (start, end, trend bucket): `period` up to now, or `start`/`end` (ISO
        8601 or epoch ms), either one alone taking the period before or after it."""
        window = period_ms(period)
        if start is None and end is None:
            now = studio.clock()
            return now - window, now, BUCKETS_MS[window]
        end_ms = parse_time_ms(end, "end") if end else None
        start_ms = parse_time_ms(start, "start") if start else None
        if start_ms is None:
            start_ms = max(0, (end_ms or 0) - window)
        if end_ms is None:
            end_ms = min(start_ms + window, INT64_MAX)
        if end_ms <= start_ms:
            raise BadRequest("'end' must be after 'start'")
        span = end_ms - start_ms
        fits = [b for w, b in sorted(BUCKETS_MS.items()) if span <= w]
        # The bucket of the smallest period that holds the window; never more than 500 of them.
        return start_ms, end_ms, max(fits[0] if fits else 86_400_000, -(-span // 500))

    @dataclass(frozen=True, slots=True)
    class Breakdown:
        total: UsageRow | None
        by_model: list[UsageRow]
        by_agent: list[UsageRow]
        trend: list[UsageRow]

    async def breakdown(
        period: str,
        agent_id: str | None,
        model: str | None,
        start_at: str | None,
        end_at: str | None,
    ) -> Breakdown:
        """The usage of a period: its total, by model, by agent and per time bucket."""
        start, end, bucket = _period(period, start_at, end_at)
        # `?model=` filters nothing; `?model=(unknown)` selects the usage that names no model,
        # which the store's query takes as the empty name.
        kw = {"agent_id": agent_id, "model": "" if model == UNKNOWN_MODEL else (model or None)}
        total = await usage(start, end, **kw)
        return Breakdown(
            total[0] if total else None,
            await usage(start, end, group_by="model", **kw),
            await usage(start, end, group_by="agent", **kw),
            await usage(start, end, bucket_ms=bucket, **kw),
        )

    @api.get("/v1/dashboard/metrics/tokens", summary="Token usage by agent, model and time")
    @reuse
    async def tokens(
        period: str = Query("24h"),
        agent_id: str | None = None,
        model: str | None = None,
        start: str | None = Query(None, description="from this time (ISO 8601 or ms)"),
        end: str | None = Query(None, description="before this time (ISO 8601 or ms)"),
    ) -> Response:
        b = await breakdown(period, agent_id, model, start, end)
        return ok(
            {
                "period": period,
                "total": _tokens(b.total),
                "by_agent": {str(r.key): _tokens(r) for r in b.by_agent},
                "by_model": {
                    str(r.key or UNKNOWN_MODEL): {**_tokens(r), "priced": r.unpriced_tokens == 0}
                    for r in b.by_model
                },
                "trend": [
                    {"timestamp": iso_ms(int(r.key or 0)), "input": r.input, "output": r.output}
                    for r in b.trend
                ],
                "cost": _money(b.total),
                "unpriced_tokens": b.total.unpriced_tokens if b.total else 0,
            }
        )

    @api.get("/v1/dashboard/metrics/costs", summary="Cost by agent, model and time")
    @reuse
    async def costs(
        period: str = Query("24h"),
        agent_id: str | None = None,
        model: str | None = None,
        start: str | None = Query(None, description="from this time (ISO 8601 or ms)"),
        end: str | None = Query(None, description="before this time (ISO 8601 or ms)"),
    ) -> Response:
        b = await breakdown(period, agent_id, model, start, end)
        return ok(
            {
                "period": period,
                "total": _money(b.total),
                "by_agent": {str(r.key): r.money() for r in b.by_agent},
                "by_model": {str(r.key or UNKNOWN_MODEL): r.money() for r in b.by_model},
                "trend": [  # an hour of unpriced tokens only has no amount, not $0
                    {"timestamp": iso_ms(int(r.key or 0)), "amount": r.money()["amount"]}
                    for r in b.trend
                ],
                "unpriced_tokens": b.total.unpriced_tokens if b.total else 0,
                "unpriced_models": sorted(
                    str(r.key or UNKNOWN_MODEL) for r in b.by_model if r.unpriced_tokens
                ),
            }
        )

    @api.get("/v1/dashboard/metrics/performance", summary="Step and tool latencies, error rate")
    @reuse
    async def performance(
        period: str = Query("24h"),
        agent_id: str | None = None,
        start_at: str | None = Query(None, alias="start", description="ISO 8601 or ms"),
        end_at: str | None = Query(None, alias="end", description="ISO 8601 or ms"),
    ) -> Response:
        start, end, _ = _period(period, start_at, end_at)
        agents = (agent_id,) if agent_id else None
        steps = await scan(
            EventFilter(
                agent_ids=agents, event_types=("step_complete",), start_ms=start, end_ms=end
            )
        )
        durations: list[float] = []
        sessions: set[str | None] = set()
        for event in steps:
            sessions.add(event.session_id)
            value = _num(orjson.loads(event.payload).get("duration_ms"))
            if value is not None:
                durations.append(value)
        latency = await tool_latency(start, end, agents)
        rows = await usage(start, end, agent_id=agent_id)
        requests = rows[0].requests if rows else 0
        errors = await error_count(start, end, agent_id)
        return ok(
            {
                "period": period,
                "ttft": percentiles(durations),
                "step_latency": percentiles(durations),
                # Time per output token needs per-token timing no agent event carries.
                "tpot": percentiles([]),
                "tool_latency": {name: percentiles(v) for name, v in sorted(latency.items())},
                "avg_loop_count": round(len(steps) / len(sessions), 2) if sessions else 0.0,
                "request_count": requests,
                "error_count": errors,
                "error_rate": error_rate(errors, requests),
            }
        )

    async def trace_summary(record: SessionRecord) -> tuple[dict[str, Any], list[StoredEvent]]:
        session_id = record.id
        events = await scan(
            EventFilter(
                session_ids=(session_id,),
                event_types=(*TOOL_EVENT_TYPES, "error"),
            )
        )
        usage_by = await studio.run_sync(store.session_usage, [session_id])
        totals = usage_by.get(session_id)
        errors = [e for e in events if counts_as_error(e.event_type, e.severity)]
        end = record.ended_at or record.updated_at
        # From the session's count of errors, as the list filters by it.
        status = session_outcome(record.status, record.error_count)
        agent = studio.registry.agents.get(record.agent_id)
        summary: dict[str, Any] = {
            "id": record.id,
            "name": f"session {record.id}",
            "agent_id": record.agent_id,
            "agent_name": (agent.name if agent else None) or record.agent_id,
            "start_time": iso_ms(record.created_at),
            "duration_ms": max(end - record.created_at, 1),
            "status": status,
            "span_count": 1 + sum(1 for e in events if e.event_type == "tool:start"),
            "token_usage": totals.tokens() if totals else {"input": 0, "output": 0, "total": 0},
            "cost": _money(totals),
        }
        if errors:
            summary["error_message"] = str(orjson.loads(errors[-1].payload).get("message", ""))
        return summary, events

    @api.get("/v1/dashboard/traces", summary="One trace per session, newest activity first")
    async def traces(
        limit: str | None = Query(None, description="1..1000, default 50"),
        offset: int = Query(0, ge=0, le=INT64_MAX),
        status: str | None = Query(None, description="ok, error or running"),
        agent_id: str | None = None,
    ) -> Response:
        size = clamp_limit(limit, default=50)
        # Filtered in the store's query, before paging; any other status filters nothing.
        outcome = status if status in ("running", "ok", "error") else None
        records, total = await studio.run_sync(
            lambda: store.list_sessions(
                status=None, agent_id=agent_id, limit=size, offset=offset, outcome=outcome
            )
        )
        # Each summary from the record listed, so that its status is the one filtered by.
        items = [(await trace_summary(r))[0] for r in records]
        return ok({"traces": items, "total": total, "has_more": offset + len(records) < total})

    @api.get(
        "/v1/dashboard/traces/{trace_id:path}", summary="A session's trace with tool-call spans"
    )
    async def trace(trace_id: str) -> Response:
        record = await studio.run_sync(store.get_session, trace_id)
        if record is None:
            raise NotFound("Trace not found")
        summary, events = await trace_summary(record)
        start_ms = int(summary["duration_ms"])
        children = []
        for span in tool_spans(events):
            end_ms = span["end_ms"]
            children.append(
                {
                    "id": span["id"],
                    "name": f"tool.{span['name']}",
                    "type": "tool",
                    "start_time": iso_ms(span["start_ms"]),
                    "end_time": iso_ms(end_ms),
                    "duration_ms": max((end_ms or studio.clock()) - span["start_ms"], 1),
                    "status": "error" if span["state"] == "failed" else "ok",
                    "attributes": {
                        "tool_name": span["name"],
                        "tool_id": span["id"],
                        "state": span["state"],
                    },
                }
            )
        detail = dict(summary)
        detail["root_span"] = {
            "id": trace_id,
            "name": summary["name"],
            "type": "agent",
            "start_time": summary["start_time"],
            "duration_ms": start_ms,
            "status": summary["status"],
            "children": children,
        }
        return ok(detail)

    @api.get("/v1/dashboard/insights", summary="Findings worth a look: latency, errors, cost")
    @reuse
    async def insights() -> Response:
        now = studio.clock()
        start = now - 86_400_000
        found: list[dict[str, Any]] = []
        rows = await usage(start, now)
        row = rows[0] if rows else None
        requests = row.requests if row else 0
        errors = await error_count(start, now)
        rate = error_rate(errors, requests)
        if rate > 0.05:
            found.append(
                {
                    "id": "high_error_rate",
                    "type": "reliability",
                    "severity": "critical",
                    "title": "High error rate",
                    "description": f"{errors} errors for {requests} model calls in 24 h",
                    "suggestion": "Open the Events page filtered on severity=error.",
                    "data": {
                        "error_rate": rate,
                        "error_count": errors,
                        "request_count": requests,
                    },
                    "created_at": iso_ms(now),
                }
            )
        if row is not None and row.cost > 10 and (cost := row.money()["amount"]) is not None:
            found.append(
                {
                    "id": "high_daily_cost",
                    "type": "cost",
                    "severity": "warning",
                    "title": "Daily cost above $10",
                    "description": f"${cost:,.2f} in the last 24 h",
                    "suggestion": "See Metrics for the agents and models behind it.",
                    "data": {"cost": round(cost, 4)},
                    "created_at": iso_ms(now),
                }
            )
        latency = await tool_latency(start, now, None)
        for name, values in sorted(latency.items()):
            p95 = percentiles(values)["p95"]
            if p95 > 2000:
                found.append(
                    {
                        "id": f"high_tool_latency_{name}",
                        "type": "performance",
                        "severity": "warning",
                        "title": f"Tool {name} is slow",
                        "description": f"p95 {p95} ms over {len(values)} calls",
                        "suggestion": "Check the tool's arguments and its backend.",
                        "data": {"p95_ms": p95, "calls": len(values)},
                        "created_at": iso_ms(now),
                    }
                )
        return ok(found)

    return api
