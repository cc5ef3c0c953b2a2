"""Tool spans: paired by call id, timed by the agent's own measure where it gave one."""

from __future__ import annotations

import orjson

from aster_studio.api.metrics import tool_spans
from aster_studio.models import StoredEvent


def tool(
    i: int, kind: str, call_id: str, ts: int, client_ts: int | None, **extra: object
) -> StoredEvent:
    call: dict[str, object] = {"id": call_id, "name": "fetch"}
    if call_id == "catalogue":  # EVENTS.md's call times, 3 s apart
        call["started_at"] = "2025-01-01T00:00:00Z"
        if kind == "tool:end":
            call["updated_at"] = "2025-01-01T00:00:03Z"
    body = {"event_type": kind, "call": call, **extra}
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
            tool(8, "tool:start", "catalogue", 1_000, None),
            tool(9, "tool:end", "catalogue", 1_001, None),
        ]
    )
    lengths = {s["id"]: None if s["end_ms"] is None else s["end_ms"] - s["start_ms"] for s in spans}
    assert lengths == {
        "given": 2_500,
        "clocked": 400,
        "received": 300,
        "open": None,
        "catalogue": 3_000,
    }
    states = ["completed", "failed", "completed", "executing", "completed"]
    assert [s["state"] for s in spans] == states
    assert all(set(s) == set(spans[0]) for s in spans)
