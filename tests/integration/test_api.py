"""The REST API over stored data: filters, pagination, export, metrics, pricing, restarts."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, get, tokens, wait_for
from tests.support.databases import Databases
from tests.support.openapi import problems, response_schema
from tests.support.server import StudioProcess


@pytest.fixture(scope="module")
def seeded(module_db: Databases) -> Iterator[StudioProcess]:
    """A Studio holding two agents' sessions: text, tools, errors and usage."""
    server = StudioProcess(module_db("api")).start()
    with RawAgent(server.agent_url) as agent:
        agent.request(register("alpha", name="Alpha", model="gpt-4o"))
        agent.request({"type": "register_session", "session": {"id": "s-a", "agent_id": "alpha"}})
        agent.send(event("alpha", "state_changed", channel="monitor", state="working"))
        for i in range(30):
            agent.send(event("alpha", "text_chunk", channel="progress", step=1, delta=f"w{i} "))
        agent.send(event("alpha", "text_chunk_end", step=1, text="all of it"))
        call_ = {"id": "c1", "name": "read_file", "arguments": {"path": "a.txt"}}
        agent.send(event("alpha", "tool:start", call={**call_, "state": "executing"}))
        agent.send(event("alpha", "tool:end", call={**call_, "state": "completed", "result": "ok"}))
        agent.send(event("alpha", "token_usage", input_tokens=1000, output_tokens=100))
        agent.send(event("alpha", "step_complete", step=1, duration_ms=812))
        agent.send(
            event("alpha", "error", channel="monitor", severity="error", message="needle in hay")
        )
        agent.request(register("beta", name="Beta"))
        agent.send(
            event("beta", "token_usage", input_tokens=7, output_tokens=3, model="gpt-4o-mini")
        )
        agent.send(event("beta", "error", severity="warn", message="just a warning"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    wait_for(lambda: get(server.http_url, "/v1/dashboard/events/count")["count"], lambda n: n == 39)
    yield server
    server.stop()


def test_events_are_newest_first_with_global_cursor(seeded: StudioProcess) -> None:
    page = get(seeded.http_url, "/v1/dashboard/events?limit=5")
    cursors = [e["cursor"] for e in page["events"]]
    assert cursors == sorted(cursors, reverse=True)
    assert page["cursor"] == cursors[0]
    assert len(set(cursors)) == 5


def test_event_items_carry_ids_beside_the_raw_event(seeded: StudioProcess) -> None:
    item = get(seeded.http_url, "/v1/dashboard/events?limit=1")["events"][0]
    assert item["agent_id"] == "beta"
    assert item["channel"] == "monitor"
    assert item["event_type"] == item["type"] == "error"
    assert item["event"] == {
        "channel": "monitor",  # inferred from `severity`, and put in the raw event too
        "event_type": "error",
        "severity": "warn",
        "message": "just a warning",
    }
    assert item["timestamp"].endswith("Z") and len(item["timestamp"]) == 24


def test_event_items_carry_channel_and_type_inside_the_raw_event(studio: StudioProcess) -> None:
    """The original console reads `event.channel` and `event.event_type` (DASHBOARD-API.md
    4.7): an event that left them out gets them there, and one that sent them keeps its own."""
    envelope = {"cursor": 1, "bookmark": None, "event": {"type": "tool:start", "call": {"id": "c"}}}
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("inside"))
        agent.send({"type": "event", "payload": {"agent_id": "inside", "envelope": envelope}})
        agent.send({"type": "event", "agent_id": "inside", "event": {}})
        agent.send(event("inside", "note", channel="Monitor", text="nested", meta={"channel": 1}))
        agent.send(event("inside", "quote", text='"channel":"x"'))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 4)
    assert [e["event"] for e in stored] == [
        {
            "channel": "progress",
            "event_type": "tool:start",
            "type": "tool:start",
            "call": {"id": "c"},
        },
        {"channel": "progress", "event_type": "unknown"},
        # Sent: kept as sent (the item's own `channel` is the one the Studio read from it).
        {"event_type": "note", "channel": "Monitor", "text": "nested", "meta": {"channel": 1}},
        {"channel": "progress", "event_type": "quote", "text": '"channel":"x"'},
    ]
    assert [e["channel"] for e in stored] == ["progress", "progress", "monitor", "progress"]
    newest = get(studio.http_url, "/v1/dashboard/events?limit=1")["events"][0]
    assert newest["event"] == stored[-1]["event"]
    with urllib.request.urlopen(f"{studio.http_url}/v1/dashboard/events/export") as response:
        exported = [json.loads(line)["event"] for line in response.read().splitlines()]
    assert exported == [e["event"] for e in stored]


def test_events_limit_defaults_to_100_and_caps_at_1000(seeded: StudioProcess) -> None:
    assert len(get(seeded.http_url, "/v1/dashboard/events?limit=0")["events"]) == 39
    status, _ = call(seeded.http_url, "/v1/dashboard/events?limit=5000")
    assert status == 200


def test_before_pages_through_everything_once(seeded: StudioProcess) -> None:
    seen: list[int] = []
    page = get(seeded.http_url, "/v1/dashboard/events?limit=7")
    while True:
        seen.extend(e["cursor"] for e in page["events"])
        if page["next_before"] is None:
            break
        page = get(seeded.http_url, f"/v1/dashboard/events?limit=7&before={page['next_before']}")
    assert len(seen) == len(set(seen)) == 39


def test_since_is_oldest_first_and_limited(seeded: StudioProcess) -> None:
    page = get(seeded.http_url, "/v1/dashboard/events/since/3?limit=4")
    assert [e["cursor"] for e in page["events"]] == [4, 5, 6, 7]
    assert page["next_cursor"] == page["cursor"] == 7
    assert page["has_more"] is True


def test_has_more_is_false_on_a_last_page_that_is_exactly_full(seeded: StudioProcess) -> None:
    """39 events in pages of 13: the third page holds the last 13, and says nothing is left
    (it said `has_more: true`, and the page it pointed to was empty)."""
    pages = []
    page = get(seeded.http_url, "/v1/dashboard/events?limit=13")
    pages.append(page)
    while page["next_before"] is not None:
        page = get(seeded.http_url, f"/v1/dashboard/events?limit=13&before={page['next_before']}")
        pages.append(page)
    assert [len(p["events"]) for p in pages] == [13, 13, 13]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert pages[1]["next_before"] == pages[1]["events"][-1]["cursor"]
    since = []
    page = get(seeded.http_url, "/v1/dashboard/events/since/0?limit=13")
    since.append(page)
    while page["has_more"]:
        page = get(seeded.http_url, f"/v1/dashboard/events/since/{page['next_cursor']}?limit=13")
        since.append(page)
    assert [len(p["events"]) for p in since] == [13, 13, 13]
    assert since[-1]["next_cursor"] == since[-1]["events"][-1]["cursor"]


def test_since_with_non_integer_cursor_is_400(seeded: StudioProcess) -> None:
    status, body = call(seeded.http_url, "/v1/dashboard/events/since/abc")
    assert status == 400
    assert body == {"success": False, "error": {"code": "bad_request", "message": "Invalid cursor"}}


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("agent_id=beta", 2),
        ("session_id=s-a", 37),
        ("channel=progress", 36),  # token_usage and step_complete infer to progress
        ("event_type=text_chunk", 30),
        ("event_type=tool:start,tool:end", 2),
        ("severity=error", 1),
        ("severity=warn,error", 2),
        ("q=needle", 1),
        ("q=%25", 0),  # LIKE wildcards are matched literally
        ("agent_id=alpha&event_type=token_usage", 1),
        ("event_type=TEXT_CHUNK", 30),  # any case, as the live stream's filter
        ("severity=ERROR", 1),
    ],
)
def test_event_filters(seeded: StudioProcess, query: str, count: int) -> None:
    assert len(events(seeded.http_url, query)) == count
    assert get(seeded.http_url, f"/v1/dashboard/events/count?{query}")["count"] == count


def test_time_range_filter(seeded: StudioProcess) -> None:
    newest = get(seeded.http_url, "/v1/dashboard/events?limit=1")["events"][0]["timestamp"]
    assert len(events(seeded.http_url, "end=2000-01-01T00:00:00Z")) == 0
    assert len(events(seeded.http_url, "start=2000-01-01T00:00:00Z")) == 39
    later = f"start={newest.replace(':', '%3A')}"
    assert 1 <= len(events(seeded.http_url, later)) <= 39


def test_a_limit_that_is_no_positive_number_is_the_default(seeded: StudioProcess) -> None:
    """As the original (DASHBOARD-API.md): `abc`, 0 or -5 give the default page, not a 400."""
    for limit in ("abc", "0", "-5", "", "1e3"):
        page = get(seeded.http_url, f"/v1/dashboard/events?limit={limit}")
        assert len(page["events"]) == 39 and page["has_more"] is False, limit
    assert len(get(seeded.http_url, "/v1/dashboard/events?limit=7")["events"]) == 7
    assert get(seeded.http_url, "/v1/dashboard/sessions?limit=abc")["total"] >= 1
    assert get(seeded.http_url, "/v1/dashboard/traces?limit=abc")["traces"]


@pytest.mark.parametrize("limit", ["abc", "0", "-1", ""])
def test_agents_and_export_take_a_limit_that_is_no_positive_number_as_the_default(
    seeded: StudioProcess, limit: str
) -> None:
    """The rule docs/api.md gives every paged route: these were 400s on these two routes."""
    assert get(seeded.http_url, f"/v1/dashboard/agents?limit={limit}")["total"] == 2
    assert len(get(seeded.http_url, f"/v1/dashboard/agents?limit={limit}")["agents"]) == 2
    url = f"{seeded.http_url}/v1/dashboard/events/export?format=jsonl&limit={limit}"
    with urllib.request.urlopen(url) as response:
        assert len(response.read().splitlines()) == 39


def test_agents_and_export_limits_still_limit(seeded: StudioProcess) -> None:
    assert len(get(seeded.http_url, "/v1/dashboard/agents?limit=1")["agents"]) == 1
    url = f"{seeded.http_url}/v1/dashboard/events/export?format=csv&limit=5"
    with urllib.request.urlopen(url) as response:
        assert len(response.read().splitlines()) == 6  # the header and 5 rows


def test_bad_time_is_a_clear_400(seeded: StudioProcess) -> None:
    status, body = call(seeded.http_url, "/v1/dashboard/events?start=yesterday")
    assert status == 400
    assert "start" in body["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/dashboard/events/since/99999999999999999999",
        "/v1/dashboard/events?start=99999999999999999999",
        "/v1/dashboard/events?end=99999999999999999999999",
        "/v1/dashboard/events?before=99999999999999999999",
        "/v1/dashboard/sessions?offset=99999999999999999999",
        "/v1/dashboard/traces?offset=99999999999999999999",
    ],
)
def test_numbers_past_64_bits_are_a_clear_400(seeded: StudioProcess, path: str) -> None:
    """They reached the store and failed there, with a bare 500."""
    status, body = call(seeded.http_url, path)
    assert status == 400, body
    assert body["success"] is False and body["error"]["code"] == "bad_request"


def test_export_jsonl_returns_every_matching_event(seeded: StudioProcess) -> None:
    with urllib.request.urlopen(
        f"{seeded.http_url}/v1/dashboard/events/export?format=jsonl&agent_id=alpha"
    ) as response:
        assert "attachment" in response.headers["Content-Disposition"]
        lines = response.read().decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 37
    assert [r["cursor"] for r in rows] == sorted(r["cursor"] for r in rows)


def test_export_csv_has_header_and_rows(seeded: StudioProcess) -> None:
    with urllib.request.urlopen(
        f"{seeded.http_url}/v1/dashboard/events/export?format=csv&event_type=error"
    ) as response:
        rows = list(csv.reader(io.StringIO(response.read().decode())))
    assert rows[0][:3] == ["cursor", "timestamp", "agent_id"]
    assert len(rows) == 3
    assert json.loads(rows[1][-1])["message"] == "needle in hay"


def test_sessions_list_with_usage_and_agent_name(seeded: StudioProcess) -> None:
    data = get(seeded.http_url, "/v1/dashboard/sessions?agent_id=alpha")
    assert data["total"] == 1
    session = data["sessions"][0]
    assert session["agent_name"] == "Alpha"
    assert session["token_usage"] == tokens(1000, 100)
    assert session["event_count"] == 37
    assert get(seeded.http_url, "/v1/dashboard/sessions?status=completed")["total"] == 0


def test_session_detail_assembles_messages(seeded: StudioProcess) -> None:
    session = get(seeded.http_url, "/v1/dashboard/sessions/s-a")
    assert [m["content"] for m in session["messages"]] == ["all of it"]
    assert session["messages_truncated"] is False


def test_missing_session_is_404(seeded: StudioProcess) -> None:
    status, body = call(seeded.http_url, "/v1/dashboard/sessions/nope")
    assert status == 404
    assert body["error"] == {"code": "not_found", "message": "Session not found"}


def test_overview_counts_real_data(seeded: StudioProcess) -> None:
    data = get(seeded.http_url, "/v1/dashboard/overview?period=1h")
    assert data["total_requests"] == 2
    assert data["token_usage"] == tokens(1007, 103)
    expected = (1000 * 2.5 + 100 * 10) / 1e6 + (7 * 0.15 + 3 * 0.6) / 1e6
    assert abs(data["cost"]["amount"] - expected) < 1e-12
    assert data["error_count"] == 1  # the warning is not an error
    assert data["error_rate"] == 0.5
    assert data["avg_latency_ms"] == 812
    assert data["active_sessions"] == 0  # s-a was never ended, but its agent went away
    assert data["latest_errors"][0]["event"]["message"] == "just a warning"
    assert data["period"] == "1h"
    assert data["events_total"] == 39


def test_active_sessions_are_those_of_connected_agents(studio: StudioProcess) -> None:
    """The original document has no end_session: a session whose agent left stayed "active"
    for ever, and the overview counted 30 of them with no agent online."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("live"))
        for sid in ("open", "ended"):
            agent.request({"type": "register_session", "session": {"id": sid, "agent_id": "live"}})
        agent.send({"type": "end_session", "session_id": "ended"})
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        overview = "/v1/dashboard/overview"
        wait_for(lambda: get(studio.http_url, overview)["active_sessions"], lambda n: n == 1)
    wait_for(lambda: get(studio.http_url, overview)["active_sessions"], lambda n: n == 0)


def test_overview_counts_events_not_cursors_after_a_crash(
    tmp_path: Path, new_db: Databases
) -> None:
    """Cursors skip ahead after a crash (by a million): the total was the newest cursor."""
    server = StudioProcess(new_db("c")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            for i in range(3):
                agent.send(event("c", "x", i=i))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: events(server.http_url), lambda e: len(e) == 3)
        server.kill()
        server.start()
        with RawAgent(server.agent_url) as agent:
            agent.send(event("c", "x", i=3))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        stored = wait_for(lambda: events(server.http_url), lambda e: len(e) == 4)
        assert stored[-1]["cursor"] > 1_000_000
        assert get(server.http_url, "/v1/dashboard/overview")["events_total"] == 4
    finally:
        server.stop()


def test_an_agents_last_seen_after_a_crash_is_its_last_event(
    tmp_path: Path, new_db: Databases
) -> None:
    """Only state changes and disconnects write `last_seen`: after a kill it showed the
    registration time."""
    server = StudioProcess(new_db("seen")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("seen"))
            time.sleep(0.05)  # the event's time differs from the registration's
            agent.send(event("seen", "x"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            wait_for(lambda: events(server.http_url), lambda e: len(e) == 1)  # stored
            before = get(server.http_url, "/v1/dashboard/agents/seen")
            server.kill()
        server.start()
        after = get(server.http_url, "/v1/dashboard/agents/seen")
        assert after["status"] == "offline"
        assert after["last_seen"] == before["last_event_at"] > before["registered_at"]
    finally:
        server.stop()


def test_renaming_an_offline_agent_changes_only_its_name_and_metadata(
    tmp_path: Path, new_db: Databases
) -> None:
    """The rename stored the agent's registration again: its last contact became the time of
    the rename, and an implicit agent a registered one, from the next start on."""
    server = StudioProcess(new_db("rename")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.send(event("unnamed", "x"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        before = wait_for(
            lambda: get(server.http_url, "/v1/dashboard/agents/unnamed"),
            lambda v: v["status"] == "offline",
        )
        time.sleep(0.05)  # a rename's time differs from the last contact's
        body = {"name": "renamed", "metadata": {"team": "docs"}}
        assert call(server.http_url, "/v1/agents/unnamed", "PATCH", body)[0] == 200
        server.restart()
        after = get(server.http_url, "/v1/dashboard/agents/unnamed")
        assert (after["name"], after["metadata"]) == ("renamed", {"team": "docs"})
        assert (after["last_seen"], after["implicit"]) == (before["last_seen"], True)
    finally:
        server.stop()


def test_events_total_keeps_the_events_of_a_deleted_agent(
    tmp_path: Path, new_db: Databases
) -> None:
    """The total summed the known agents' counts: deleting an agent took its events out of
    it, though they stay stored. They stay counted after restarts, beside the events of the
    agent come back (implicitly, by sending again)."""
    server = StudioProcess(new_db("d")).start()
    overview = "/v1/dashboard/overview"
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("gone"))
            agent.request(register("kept"))
            for i in range(3):
                agent.send(event("gone", "x", i=i))
            agent.send(event("kept", "x"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(
            lambda: get(server.http_url, "/v1/dashboard/agents/gone"),
            lambda v: v["status"] == "offline" and v["event_count"] == 3,
        )
        assert call(server.http_url, "/v1/agents/gone", "DELETE")[0] == 204
        assert get(server.http_url, overview)["events_total"] == 4
        server.restart()
        assert get(server.http_url, overview)["events_total"] == 4
        with RawAgent(server.agent_url) as agent:
            agent.send(event("gone", "x", i=3))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: events(server.http_url), lambda e: len(e) == 5)
        assert get(server.http_url, overview)["events_total"] == 5
        server.restart()
        assert get(server.http_url, overview)["events_total"] == 5
    finally:
        server.stop()


def test_token_and_cost_metrics_take_start_and_end(seeded: StudioProcess) -> None:
    """The original's `start` and `end` were accepted and ignored: the last 24 h came back."""
    for route in ("tokens", "costs", "performance"):
        past = get(
            seeded.http_url,
            f"/v1/dashboard/metrics/{route}?start=2020-01-01T00:00:00Z&end=2020-01-02T00:00:00Z",
        )
        now = get(
            seeded.http_url,
            f"/v1/dashboard/metrics/{route}?start=2020-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
        )
        if route == "tokens":
            assert past["total"]["total"] == 0 and now["total"]["total"] == 1110
        elif route == "costs":
            assert past["total"]["amount"] == 0 and now["total"]["amount"] > 0
        else:
            assert past["request_count"] == 0 and now["request_count"] == 2
    status, body = call(seeded.http_url, "/v1/dashboard/metrics/tokens?start=garbage")
    assert status == 400 and "start" in body["error"]["message"]
    status, _ = call(
        seeded.http_url,
        "/v1/dashboard/metrics/costs?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
    )
    assert status == 400


def test_token_metrics_by_model_and_agent(seeded: StudioProcess) -> None:
    data = get(seeded.http_url, "/v1/dashboard/metrics/tokens?period=1h")
    assert data["by_model"]["gpt-4o"]["total"] == 1100
    assert data["by_model"]["gpt-4o-mini"]["total"] == 10
    assert data["by_agent"]["beta"] == tokens(7, 3)
    assert sum(t["input"] + t["output"] for t in data["trend"]) == 1110


def test_performance_reports_tool_latency_and_steps(seeded: StudioProcess) -> None:
    data = get(seeded.http_url, "/v1/dashboard/metrics/performance?period=24h")
    assert data["ttft"]["p50"] == 812
    assert data["ttft"]["count"] == 1
    assert "read_file" in data["tool_latency"]
    assert isinstance(data["avg_loop_count"], float)


def test_performance_without_steps_counts_none(seeded: StudioProcess) -> None:
    data = get(seeded.http_url, "/v1/dashboard/metrics/performance?period=24h&agent_id=beta")
    assert data["ttft"] == {"p50": 0, "p95": 0, "p99": 0, "avg": 0, "max": 0, "count": 0}


def test_traces_are_sessions_with_tool_spans(seeded: StudioProcess) -> None:
    traces = get(seeded.http_url, "/v1/dashboard/traces")["traces"]
    trace = next(t for t in traces if t["id"] == "s-a")
    assert trace["status"] == "running"
    assert trace["span_count"] == 2
    detail = get(seeded.http_url, "/v1/dashboard/traces/s-a")
    assert detail["root_span"]["children"][0]["attributes"]["tool_name"] == "read_file"
    assert detail["duration_ms"] > 0


def test_original_console_agent_records(seeded: StudioProcess) -> None:
    records = get(seeded.http_url, "/v1/agents")
    assert isinstance(records, list)
    alpha = next(r for r in records if r["id"] == "alpha")
    assert alpha["status"] in ("active", "disabled", "archived")
    assert isinstance(alpha["config"]["template_id"], str)
    assert alpha["metadata"]["name"] == "Alpha"


def test_openapi_schema_lists_the_routes(seeded: StudioProcess) -> None:
    status, schema = call(seeded.http_url, "/openapi.json")
    assert status == 200
    assert "/v1/dashboard/events" in schema["paths"]
    assert "/v1/dashboard/pricing" in schema["paths"]
    # Bad input is a 400 with the envelope, as the API answers it, never the framework's 422.
    listing = schema["paths"]["/v1/dashboard/events"]["get"]["responses"]
    assert "422" not in listing and listing["400"]["content"]["application/json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    status, body = call(seeded.http_url, "/v1/dashboard/events?before=many")
    assert status == 400 and body["success"] is False


DOCUMENTED = [
    ("/v1/dashboard/events?limit=5", "/v1/dashboard/events"),
    ("/v1/dashboard/events/since/0?limit=5", "/v1/dashboard/events/since/{cursor}"),
    ("/v1/dashboard/events/count", "/v1/dashboard/events/count"),
    ("/v1/dashboard/events/stats", "/v1/dashboard/events/stats"),
    ("/v1/dashboard/agents", "/v1/dashboard/agents"),
    ("/v1/dashboard/agents/alpha", "/v1/dashboard/agents/{agent_id}"),
    ("/v1/agents", "/v1/agents"),
    ("/v1/agents/alpha", "/v1/agents/{agent_id}"),
    ("/v1/remote-agents/stats", "/v1/remote-agents/stats"),
    ("/v1/dashboard/sessions", "/v1/dashboard/sessions"),
    ("/v1/dashboard/sessions/s-a", "/v1/dashboard/sessions/{session_id}"),
    ("/v1/dashboard/traces", "/v1/dashboard/traces"),
    ("/v1/dashboard/traces/s-a", "/v1/dashboard/traces/{trace_id}"),
    ("/v1/dashboard/overview", "/v1/dashboard/overview"),
    ("/v1/dashboard/metrics/tokens", "/v1/dashboard/metrics/tokens"),
    ("/v1/dashboard/metrics/costs", "/v1/dashboard/metrics/costs"),
    ("/v1/dashboard/metrics/performance", "/v1/dashboard/metrics/performance"),
    ("/v1/dashboard/insights", "/v1/dashboard/insights"),
    ("/v1/dashboard/pricing", "/v1/dashboard/pricing"),
    ("/v1/dashboard/requests?status=all", "/v1/dashboard/requests"),
    ("/v1/dashboard/audit", "/v1/dashboard/audit"),
    ("/v1/auth/session", "/v1/auth/session"),
    ("/healthz", "/healthz"),
    ("/health", "/health"),
    ("/v1/dashboard/sessions/nope", "/v1/dashboard/sessions/{session_id}"),  # 404
    ("/v1/dashboard/agents/nope", "/v1/dashboard/agents/{agent_id}"),  # 404
    ("/v1/dashboard/events?before=many", "/v1/dashboard/events"),  # 400
    ("/v1/dashboard/events/since/abc", "/v1/dashboard/events/since/{cursor}"),  # 400
]


@pytest.mark.parametrize(("url", "path"), DOCUMENTED)
def test_responses_match_the_openapi_document(seeded: StudioProcess, url: str, path: str) -> None:
    """Every success response was `{"schema": {}}` and 404 was documented nowhere: a client
    generated from /openapi.json had no types, and could not check a response."""
    _, document = call(seeded.http_url, "/openapi.json")
    status, body = call(seeded.http_url, url)
    schema = response_schema(document, "get", path, status, "application/json")
    assert schema and problems(body, schema, document) == []


def test_writes_match_the_openapi_document(seeded: StudioProcess) -> None:
    _, document = call(seeded.http_url, "/openapi.json")
    price = {"model": "schema-check", "input_price_per_m": 1, "output_price_per_m": 2}
    for method, url, path, body in [
        ("PUT", "/v1/dashboard/pricing", "/v1/dashboard/pricing", price),
        ("PUT", "/v1/dashboard/pricing", "/v1/dashboard/pricing", {"model": 3}),  # 400
        ("DELETE", "/v1/dashboard/pricing/schema-check", "/v1/dashboard/pricing/{model}", None),
        ("DELETE", "/v1/dashboard/pricing/schema-check", "/v1/dashboard/pricing/{model}", None),
        ("PATCH", "/v1/agents/beta", "/v1/agents/{agent_id}", {"metadata": {"team": "b"}}),
        ("PATCH", "/v1/agents/nope", "/v1/agents/{agent_id}", {"name": "x"}),  # 404
    ]:
        status, answer = call(seeded.http_url, url, method, body)
        schema = response_schema(document, method.lower(), path, status, "application/json")
        assert problems(answer, schema, document) == [], (method, url)


def test_every_route_documents_its_success_body(seeded: StudioProcess) -> None:
    _, document = call(seeded.http_url, "/openapi.json")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status == "204":
                    continue
                for media, content in response["content"].items():
                    assert content["schema"], (method, path, status, media)
            if path not in ("/healthz", "/health", "/v1/auth/login", "/v1/auth/session"):
                assert "401" in operation["responses"], (method, path)
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "limit":
                    assert parameter["schema"]["type"] == "integer", (method, path)


@pytest.mark.parametrize(
    ("query", "media"), [("format=jsonl", "application/x-ndjson"), ("format=csv", "text/csv")]
)
def test_text_responses_have_the_documented_media_type(
    seeded: StudioProcess, query: str, media: str
) -> None:
    _, document = call(seeded.http_url, "/openapi.json")
    export = "/v1/dashboard/events/export"
    with urllib.request.urlopen(f"{seeded.http_url}{export}?{query}") as response:
        sent = response.headers["content-type"].split(";")[0]
    assert sent == media
    assert response_schema(document, "get", export, 200, media)["type"] == "string"
    assert "application/json" not in document["paths"][export]["get"]["responses"]["200"]["content"]
    with urllib.request.urlopen(f"{seeded.http_url}/metrics") as response:
        sent = response.headers["content-type"].split(";")[0]
    assert response_schema(document, "get", "/metrics", 200, sent)["type"] == "string"


def test_healthz_documents_its_503(seeded: StudioProcess) -> None:
    _, document = call(seeded.http_url, "/openapi.json")
    degraded = {
        "status": "degraded",
        "version": "0",
        "uptime_s": 1.5,
        "store": {"backend": "sqlite", "id": "0f", "status": "unhealthy", "error": "disk full"},
        "write_queue": 0,
        "agents_online": 0,
    }
    schema = response_schema(document, "get", "/healthz", 503, "application/json")
    assert problems(degraded, schema, document) == []
    assert problems({**degraded, "status": "fine"}, schema, document) != []


@pytest.mark.parametrize("path", ["/healthz", "/health", "/metrics", "/v1/dashboard/overview"])
def test_head_is_answered_wherever_get_is(seeded: StudioProcess, path: str) -> None:
    """RFC 9110 9.1: a HEAD health probe got a 405 and saw the Studio down."""
    request = urllib.request.Request(seeded.http_url + path, method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.read() == b""
        assert response.headers["content-type"]


def test_metrics_endpoint_is_prometheus_text(seeded: StudioProcess) -> None:
    with urllib.request.urlopen(f"{seeded.http_url}/metrics") as response:
        text = response.read().decode()
    assert "aster_events_stored_total 39" in text


def test_price_change_applies_from_then_on(tmp_path: Path, new_db: Databases) -> None:
    with StudioProcess(new_db("p")) as server, RawAgent(server.agent_url) as agent:
        agent.request(register("p", model="house-model"))
        agent.send(event("p", "token_usage", input_tokens=1_000_000, output_tokens=0))
        wait_for(
            lambda: get(server.http_url, "/v1/dashboard/agents/p"),
            lambda v: v["unpriced_tokens"] == 1_000_000,
        )
        # Never an unpriced $0: no amount at all, wherever the cost is shown.
        unpriced = {"amount": None, "currency": "USD", "unpriced_tokens": 1_000_000}
        assert get(server.http_url, "/v1/dashboard/agents/p")["cost"] == unpriced
        costs = get(server.http_url, "/v1/dashboard/metrics/costs")
        assert costs["by_model"]["house-model"] == costs["by_agent"]["p"] == unpriced
        assert costs["total"] == unpriced
        status, body = call(
            server.http_url,
            "/v1/dashboard/pricing",
            "PUT",
            {"model": "house-model", "input_price_per_m": 2, "output_price_per_m": 0},
        )
        assert status == 200 and body["data"]["pricing"]["output_price_per_m"] == 0
        agent.send(event("p", "token_usage", input_tokens=1_000_000, output_tokens=5))
        view = wait_for(
            lambda: get(server.http_url, "/v1/dashboard/agents/p"),
            lambda v: v["token_usage"]["input"] == 2_000_000,
        )
        assert view["cost"]["amount"] == 2.0  # only the second event is priced
        assert view["unpriced_tokens"] == view["cost"]["unpriced_tokens"] == 1_000_000
        assert (
            get(server.http_url, "/v1/dashboard/pricing")["house-model"]["input_price_per_m"] == 2
        )


def test_pricing_put_rejects_bad_bodies(studio: StudioProcess) -> None:
    for body in (
        {"input_price_per_m": 1, "output_price_per_m": 1},
        {"model": "m", "input_price_per_m": -1, "output_price_per_m": 1},
        {"model": "m", "input_price_per_m": "1", "output_price_per_m": 1},
        # Totals add costs up: a price in another currency would be summed as dollars.
        {"model": "m", "input_price_per_m": 1, "output_price_per_m": 1, "currency": "EUR"},
    ):
        status, reply = call(studio.http_url, "/v1/dashboard/pricing", "PUT", body)
        assert status == 400 and reply["error"]["code"] == "bad_request"


def test_a_price_whose_model_name_has_a_slash_can_be_removed(studio: StudioProcess) -> None:
    price = {"model": "openai/gpt-oss-120b", "input_price_per_m": 0.1, "output_price_per_m": 0.5}
    assert call(studio.http_url, "/v1/dashboard/pricing", "PUT", price)[0] == 200
    status, body = call(studio.http_url, "/v1/dashboard/pricing/openai/gpt-oss-120b", "DELETE")
    assert status == 200 and body["data"] == {"model": "openai/gpt-oss-120b", "deleted": True}
    assert "openai/gpt-oss-120b" not in get(studio.http_url, "/v1/dashboard/pricing")


def test_everything_survives_a_restart(tmp_path: Path, new_db: Databases) -> None:
    server = StudioProcess(new_db("r")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("keep", name="Keeper", model="gpt-4o"))
            agent.request({"type": "register_session", "session": {"id": "ks", "agent_id": "keep"}})
            agent.send(event("keep", "token_usage", input_tokens=10, output_tokens=10))
            agent.send(event("keep", "state_changed", state="working"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        call(
            server.http_url,
            "/v1/dashboard/pricing",
            "PUT",
            {"model": "kept", "input_price_per_m": 1, "output_price_per_m": 1},
        )
        before = events(server.http_url)
        server.restart()
        assert events(server.http_url) == before
        view = get(server.http_url, "/v1/dashboard/agents/keep")
        assert (view["name"], view["state"], view["status"]) == ("Keeper", "working", "offline")
        assert view["event_count"] == 2  # counted again from the events at open
        assert view["token_usage"]["total"] == 20 and view["cost"]["amount"] > 0
        assert get(server.http_url, "/v1/dashboard/sessions/ks")["event_count"] == 2
        assert "kept" in get(server.http_url, "/v1/dashboard/pricing")
        with RawAgent(server.agent_url) as agent:
            agent.send(event("keep", "x"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        newest = wait_for(lambda: events(server.http_url), lambda e: len(e) == 3)[-1]
        assert newest["cursor"] > before[-1]["cursor"]
    finally:
        server.stop()


def test_working_agent_that_goes_silent_is_stalled(tmp_path: Path, new_db: Databases) -> None:
    server = StudioProcess(new_db("st"), args=("--stall-after", "0.5")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("slow"))
            agent.send(event("slow", "state_changed", state="working"))
            started = time.monotonic()
            view = wait_for(
                lambda: get(server.http_url, "/v1/dashboard/agents/slow"),
                lambda v: v["stalled"],
                timeout=10,
            )
            assert time.monotonic() - started >= 0.4
            assert view["health"] == "stalled"
            assert get(server.http_url, "/v1/dashboard/overview")["agents"]["stalled"] == 1
            # Stalled is not working, in the list's filter as in the overview's counts.
            listed = "/v1/dashboard/agents?status="
            assert get(server.http_url, listed + "working")["total"] == 0
            assert get(server.http_url, listed + "stalled")["total"] == 1
            agent.send(event("slow", "text_chunk", delta="alive"))
            wait_for(
                lambda: get(server.http_url, "/v1/dashboard/agents/slow"),
                lambda v: not v["stalled"],
            )
    finally:
        server.stop()


def _agents_gauge(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/metrics") as response:
        lines = response.read().decode().splitlines()
    prefix = 'aster_agents{status="'
    return {
        line[len(prefix) : line.index('"}')]: int(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(prefix)
    }


def test_agents_gauge_counts_each_agent_once(tmp_path: Path, new_db: Databases) -> None:
    """`aster_agents{status}` is a partition: a working or stalled agent was counted as
    `online` too, so the series summed to more agents than there were."""
    server = StudioProcess(new_db("g"), args=("--stall-after", "2")).start()
    try:
        with RawAgent(server.agent_url) as gone:
            gone.request(register("gone"))
        with RawAgent(server.agent_url) as agent:
            agent.request(register("idle"))
            agent.request(register("slow"))
            agent.send(event("slow", "state_changed", state="working"))
            wait_for(
                lambda: get(server.http_url, "/v1/dashboard/agents/slow")["state"], "working".__eq__
            )
            wait_for(
                lambda: get(server.http_url, "/v1/dashboard/agents/gone")["status"],
                "offline".__eq__,
            )
            assert _agents_gauge(server.http_url) == {
                "offline": 1,
                "idle": 1,
                "working": 1,
                "stalled": 0,
            }
            stalled = wait_for(
                lambda: _agents_gauge(server.http_url), lambda g: g["stalled"] == 1, timeout=10
            )
            assert stalled == {"offline": 1, "idle": 1, "working": 0, "stalled": 1}
    finally:
        server.stop()


def test_reads_by_agent_and_session_span_postings_and_survive_a_restart(
    tmp_path: Path, new_db: Databases
) -> None:
    """More events than one posting list takes (2,000): a read by agent or session joins the
    postings written so far with the newest events not yet in one, before and after a restart."""
    server = StudioProcess(new_db("p")).start()
    try:
        agents = ("p0", "p1", "p2")
        with RawAgent(server.agent_url) as agent:
            for name in agents:
                agent.request(register(name))
                agent.request({"type": "register_session", "session": {"id": f"s-{name}"}})
            for i in range(2_600):
                name = agents[i % 7 % 3]  # interleaved, unevenly
                message = event(name, "text_chunk", n=i)
                agent.send({**message, "session_id": f"s-{name}"} if i % 5 else message)
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        stored = wait_for(lambda: events(server.http_url), lambda e: len(e) == 2_600)
        for restarted in (False, True):
            if restarted:
                server.restart()
            for query, wanted in (
                ("agent_id=p1", [e for e in stored if e["agent_id"] == "p1"]),
                ("agent_id=p0,p2", [e for e in stored if e["agent_id"] != "p1"]),
                ("session_id=s-p2", [e for e in stored if e["session_id"] == "s-p2"]),
            ):
                assert events(server.http_url, query) == wanted, (query, restarted)
                count = get(server.http_url, f"/v1/dashboard/events/count?{query}")["count"]
                assert count == len(wanted)
                newest_first: list[int] = []
                page = get(server.http_url, f"/v1/dashboard/events?limit=300&{query}")
                while True:
                    newest_first += [e["cursor"] for e in page["events"]]
                    if page["next_before"] is None:
                        break
                    page = get(
                        server.http_url,
                        f"/v1/dashboard/events?limit=300&before={page['next_before']}&{query}",
                    )
                assert newest_first == [e["cursor"] for e in reversed(wanted)], (query, restarted)
    finally:
        server.stop()


def test_every_error_count_agrees_and_traces_filter_before_paging(
    tmp_path: Path, new_db: Databases
) -> None:
    """An agent counted every `error` event, the overview only severities error and fatal, a
    trace turned `error` on an info note; and `traces?status=error` filtered each page after
    reading it, so `limit=1` could return nothing with error traces further on."""
    server = StudioProcess(new_db("e")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("e"))
            for i, severity in enumerate(["info", "warn", "error", "fatal", "CRITICAL", None]):
                session = {"type": "register_session", "session": {"id": f"s{i}", "agent_id": "e"}}
                agent.request(session)
                fields = {"message": f"m{i}"} if severity is None else {"severity": severity}
                agent.send(event("e", "error", **fields))
                agent.send({"type": "end_session", "session_id": f"s{i}"})
            for i in range(6, 9):  # newer sessions without errors
                agent.request(
                    {"type": "register_session", "session": {"id": f"s{i}", "agent_id": "e"}}
                )
                agent.send({"type": "end_session", "session_id": f"s{i}"})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        for restarted in (False, True):
            if restarted:
                server.restart()
            view = wait_for(
                lambda: get(server.http_url, "/v1/dashboard/agents/e"),
                lambda v: v["event_count"] == 6,
            )
            assert view["error_count"] == 4
            assert get(server.http_url, "/v1/dashboard/overview")["error_count"] == 4
            assert get(server.http_url, "/v1/dashboard/metrics/performance")["error_count"] == 4
        first = get(server.http_url, "/v1/dashboard/traces?status=error&limit=1")
        assert [t["id"] for t in first["traces"]] == ["s5"] and first["has_more"] is True
        every = get(server.http_url, "/v1/dashboard/traces?status=error&limit=50")
        assert sorted(t["id"] for t in every["traces"]) == ["s2", "s3", "s4", "s5"]
        assert every["total"] == 4 and every["has_more"] is False
        fine = get(server.http_url, "/v1/dashboard/traces?status=ok&limit=50")
        assert sorted(t["id"] for t in fine["traces"]) == ["s0", "s1", "s6", "s7", "s8"]
    finally:
        server.stop()


def test_remote_agent_stats_have_the_original_shape(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("r1", name="writer", status="working", metadata={"team": "docs"}))
        agent.send(event("r1", "x"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        stats = wait_for(
            lambda: get(studio.http_url, "/v1/remote-agents/stats"),
            lambda s: s["agents"] and s["agents"][0]["status"]["cursor"] == 1,
        )
    assert stats["remote_agents_count"] == 1
    (entry,) = stats["agents"]
    assert entry["agent_id"] == "r1"
    assert entry["status"] == {
        "agent_id": "r1",
        "state": "working",
        "step_count": 0,
        "last_sfp_index": 0,
        "last_bookmark": None,
        "cursor": 1,
        "breakpoint": {"enabled": False},
    }
    assert entry["metadata"] == {
        "team": "docs",
        "name": "writer",
        "remote": True,
        "source": "remote_agent",
    }
    gone = wait_for(
        lambda: get(studio.http_url, "/v1/remote-agents/stats"), lambda s: not s["agents"]
    )
    assert gone["remote_agents_count"] == 0


def test_ids_holding_slashes_are_addressable(studio: StudioProcess) -> None:
    """The socket takes any id; the console asks for it URL-encoded (`%2F`): every route was a
    404 for `team/writer`."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("team/writer", name="Writer"))
        session = {"id": "user/42/conv/7", "agent_id": "team/writer"}
        agent.request({"type": "register_session", "session": session})
        agent.send(event("team/writer", "text_chunk", delta="hi", session_id="user/42/conv/7"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)
    agent_path, session_path = "team%2Fwriter", "user%2F42%2Fconv%2F7"
    assert get(studio.http_url, f"/v1/dashboard/agents/{agent_path}")["id"] == "team/writer"
    assert get(studio.http_url, f"/v1/agents/{agent_path}")["id"] == "team/writer"
    assert get(studio.http_url, f"/v1/dashboard/sessions/{session_path}")["id"] == session["id"]
    assert get(studio.http_url, f"/v1/dashboard/traces/{session_path}")["id"] == session["id"]
    status, body = call(studio.http_url, f"/v1/agents/{agent_path}", "PATCH", {"name": "W2"})
    assert (status, body["data"]["metadata"]["name"]) == (200, "W2")
    status, _ = call(
        studio.http_url,
        f"/v1/dashboard/agents/{agent_path}/tools/c1/control",
        "POST",
        {"action": "pause"},
    )
    assert status != 404
    assert call(studio.http_url, f"/v1/agents/{agent_path}", "DELETE")[0] == 204
    assert call(studio.http_url, f"/v1/agents/{agent_path}")[0] == 404


def test_metadata_nested_too_deeply_is_refused_and_breaks_nothing(studio: StudioProcess) -> None:
    """300 levels were applied in memory, then the PATCH and every list of agents were 500s."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("deep"))
    nested: dict[str, object] = {}
    for _ in range(300):
        nested = {"n": nested}
    status, body = call(studio.http_url, "/v1/agents/deep", "PATCH", {"metadata": nested})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert get(studio.http_url, "/v1/dashboard/agents")["agents"][0]["id"] == "deep"
    status, _ = call(studio.http_url, "/v1/agents/deep", "PATCH", {"metadata": {"a": {"b": 1}}})
    assert status == 200


def test_an_id_holding_a_comma_can_be_filtered_on(tmp_path: Path, new_db: Databases) -> None:
    """Filter values are comma-separated lists, so `agent_id=team,writer` looked for agents
    `team` and `writer` and never found the agent `team,writer` the console was showing."""
    server = StudioProcess(new_db("c")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            for name in ("team,writer", "team", "other"):
                agent.request(register(name))
                session = {"id": f"{name}/s,1", "agent_id": name}
                agent.request({"type": "register_session", "session": session})
                agent.send({**event(name, "text_chunk", delta=name), "session_id": session["id"]})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: len(events(server.http_url)), lambda n: n == 3)
        for query, wanted in (
            ("agent_id=team%2Cwriter", {"team,writer", "team"}),  # the id, and a list naming team
            ("agent_id=other,team", {"other", "team"}),
            ("session_id=team%2Cwriter%2Fs%2C1", {"team,writer"}),
        ):
            found = {e["agent_id"] for e in events(server.http_url, query)}
            assert found == wanted, query
    finally:
        server.stop()


def test_text_search_finds_quotes_backslashes_and_line_breaks(
    tmp_path: Path, new_db: Databases
) -> None:
    """`q` was matched against the stored JSON, where `"` is written `\\"` and a line break
    `\\n`: a quoted phrase, a Windows path or a multi-line message was never found."""
    server = StudioProcess(new_db("q")).start()
    messages = ['He said "hello"', "C:\\Users\\bob\\notes.txt", "line one\nline two", "a\tb"]
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("q"))
            for message in messages:
                agent.send(event("q", "error", severity="error", message=message))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: len(events(server.http_url)), lambda n: n == 4)
        for needle, wanted in (
            ('said "hello"', messages[0]),
            ("C:\\Users\\bob", messages[1]),
            ("one\nline", messages[2]),
            ("a\tb", messages[3]),
        ):
            query = urllib.parse.urlencode({"q": needle})
            found = [e["event"]["message"] for e in events(server.http_url, query)]
            assert found == [wanted], needle
    finally:
        server.stop()


def test_a_long_sessions_detail_keeps_its_newest_messages_whole(
    tmp_path: Path, new_db: Databases
) -> None:
    """The detail read the session's oldest 20,000 text events: the newest answer of a long
    session came back cut in half, and nothing said so."""
    server = StudioProcess(new_db("long")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("long"))
            agent.request({"type": "register_session", "session": {"id": "s-long"}})
            messages: list[dict[str, object]] = []
            for answer, chunks in ((1, 12_000), (2, 9_000)):
                messages += [event("long", "text_chunk", delta=f"a{answer} ")] * chunks
                messages.append(event("long", "text_chunk_end"))
            for start in range(0, len(messages), 1_000):
                batch = [{**m, "session_id": "s-long"} for m in messages[start : start + 1_000]]
                agent.send({"type": "batch", "messages": batch})
            assert agent.request({"type": "ping"}, timeout=30) == {"type": "pong"}
        count = "/v1/dashboard/events/count?session_id=s-long"
        wait_for(lambda: get(server.http_url, count)["count"], lambda n: n == 21_002)
        detail = get(server.http_url, "/v1/dashboard/sessions/s-long")
        assert [m["content"] for m in detail["messages"]] == ["a2 " * 9_000]  # a1's tail left out
        assert detail["messages_truncated"] is True
    finally:
        server.stop()


def test_sessions_of_a_departed_agent_are_suspended_and_unregister_ends_them(
    tmp_path: Path,
    new_db: Databases,
) -> None:
    """Clients of the original document never end a session: after they went away, their
    sessions were listed as active for ever while the overview counted none active."""
    server = StudioProcess(new_db("s")).start()

    def status_of(session_id: str) -> str:
        return str(get(server.http_url, f"/v1/dashboard/sessions/{session_id}")["status"])

    def listed(status: str) -> list[str]:
        page = get(server.http_url, f"/v1/dashboard/sessions?status={status}")
        return [s["id"] for s in page["sessions"]]

    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("doc"))
            agent.request(
                {"type": "register_session", "session": {"id": "ss-1", "agent_id": "doc"}}
            )
            agent.send({**event("doc", "text_chunk", delta="hi"), "session_id": "ss-1"})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            assert (status_of("ss-1"), listed("active"), listed("suspended")) == (
                "active",
                ["ss-1"],
                [],
            )
        wait_for(lambda: status_of("ss-1"), lambda s: s == "suspended")
        assert (listed("active"), listed("suspended")) == ([], ["ss-1"])
        assert get(server.http_url, "/v1/dashboard/overview")["active_sessions"] == 0
        with RawAgent(server.agent_url) as agent:  # back: its session goes on
            agent.request(register("doc"))
            wait_for(lambda: status_of("ss-1"), lambda s: s == "active")
            agent.request(
                {"type": "register_session", "session": {"id": "ss-2", "agent_id": "doc"}}
            )
            agent.send({"type": "unregister", "agent_id": "doc"})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            ended = wait_for(
                lambda: get(server.http_url, "/v1/dashboard/sessions/ss-2"),
                lambda s: s["status"] == "completed",
            )
            assert ended["ended_at"] is not None
        assert status_of("ss-1") == "suspended"  # left open by the agent, never ended by it
    finally:
        server.stop()


def test_errors_without_model_calls_are_a_high_error_rate_in_insights_too(
    tmp_path: Path, new_db: Databases
) -> None:
    """The overview said an error rate of 1.0 (the model API failing before any usage came),
    and insights found nothing: each computed the rate its own way."""
    server = StudioProcess(new_db("e")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request(register("failing"))
            for _ in range(3):
                agent.send(event("failing", "error", severity="error", message="model API 503"))
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: len(events(server.http_url)), lambda n: n == 3)
        assert get(server.http_url, "/v1/dashboard/overview")["error_rate"] == 1.0
        (finding,) = get(server.http_url, "/v1/dashboard/insights")
        assert (finding["id"], finding["data"]["error_rate"]) == ("high_error_rate", 1.0)
    finally:
        server.stop()
