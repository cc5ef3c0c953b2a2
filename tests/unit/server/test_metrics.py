"""Tool spans: paired by call id, timed by the agent's own measure where it gave one."""

from __future__ import annotations

import orjson

from aster_studio.api.metrics import tool_spans
from aster_studio.models import StoredEvent


def tool(
    i: int, kind: str, call_id: str, ts: int, client_ts: int | None, **extra: object
) -> StoredEvent:
    body = {"event_type": kind, "call": {"id": call_id, "name": "fetch"}, **extra}
    return StoredEvent(i, "a", "s", "progress", kind, None, ts, client_ts, orjson.dumps(body))


def test_a_span_lasts_what_the_agent_measured() -> None:
    """Sent in one batch, a 2.5 s call arrived within a millisecond of its start: its length
    was the receive times' 1 ms (a tool latency of 0), not the agent's 2,500."""
    spans = tool_spans(
        [
            tool(1, "tool:start", "given", 1_000, None),
            tool(2, "tool:end", "given", 1_001, None, duration_ms=2_500),
            tool(3, "tool:start", "clocked", 1_000, 50_000),
            tool(4, "tool:error", "clocked", 1_001, 50_400),
            tool(5, "tool:start", "received", 1_000, None),
            tool(6, "tool:end", "received", 1_300, 90_000),  # one own time: not comparable
            tool(7, "tool:start", "open", 1_000, 1),
        ]
    )
    lengths = {s["id"]: None if s["end_ms"] is None else s["end_ms"] - s["start_ms"] for s in spans}
    assert lengths == {"given": 2_500, "clocked": 400, "received": 300, "open": None}
    assert [s["state"] for s in spans] == ["completed", "failed", "completed", "executing"]
    assert all(set(s) == set(spans[0]) for s in spans)
