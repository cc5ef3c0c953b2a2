"""A client in another language: Node's `ws` sends the user's document's exact messages.

`tests/interop/node/client.mjs` is the agent (it fails on any unexpected reply); these tests run
it once against a real Studio and read back through the REST API what it sent.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import get, tokens
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"

AGENT = "agent-123"
SESSION = "session-456"
ENVELOPE_AGENT = "agent-envelope"
ENVELOPE_SESSION = "session-envelope"

# The document's four example events, in the order the client sends them.
DOCUMENT_EVENTS: list[dict[str, Any]] = [
    {"channel": "monitor", "event_type": "token_usage", "input_tokens": 100, "output_tokens": 50},
    {"channel": "monitor", "event_type": "state_changed", "state": "working"},
    {
        "channel": "monitor",
        "event_type": "error",
        "severity": "error",
        "message": "API call failed",
    },
    {"channel": "progress", "event_type": "text_chunk", "delta": "Hello, "},
]
ENVELOPE_EVENT: dict[str, Any] = {
    "channel": "progress",
    "event_type": "text_chunk",
    "delta": "from the envelope",
}

# claude-3-5-sonnet is priced by the default table's Sonnet rule: $3 in, $15 out per million.
EXPECTED_COST = (100 * 3.0 + 50 * 15.0) / 1e6


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node interop client (not on PATH)")
    return node, npm


def _install(npm: str) -> None:
    """Install the client's locked dependencies once; node_modules is git-ignored."""
    if (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=180 * UNIT,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"


def _wait_for_count(base: str, agent_id: str, expected: int) -> int:
    """Poll until the agent's events are stored (writes are write-behind), bounded in time."""
    deadline = time.monotonic() + 10 * UNIT
    count = -1
    while time.monotonic() < deadline:
        count = get(base, f"/v1/dashboard/events/count?agent_id={agent_id}")["count"]
        if count >= expected:
            return int(count)
        time.sleep(0.05)
    return int(count)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StudioProcess, str]]:
    """Start a Studio, run the Node client against it once, and wait until its events are stored."""
    node, npm = _node_tools()
    _install(npm)
    server = StudioProcess(tmp_path_factory.mktemp("interop") / "studio.db").start()
    try:
        done = subprocess.run(
            [node, "client.mjs", server.url],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60 * UNIT,
        )
        output = f"exit {done.returncode}\n{done.stdout}{done.stderr}"
        if done.returncode == 0:
            _wait_for_count(server.http_url, AGENT, len(DOCUMENT_EVENTS))
            _wait_for_count(server.http_url, ENVELOPE_AGENT, 1)
        yield server, output
    finally:
        server.stop()


def _stored(base: str, agent_id: str) -> list[dict[str, Any]]:
    """The agent's stored events, oldest first."""
    page = get(base, f"/v1/dashboard/events?agent_id={agent_id}&limit=100")
    return list(reversed(page["events"]))


def test_node_client_gets_every_expected_reply_and_nothing_else(
    run: tuple[StudioProcess, str],
) -> None:
    _, output = run
    assert output.startswith("exit 0\n"), output
    assert "interop: ok" in output


def test_document_events_are_stored_exactly_with_agent_session_channel_and_type(
    run: tuple[StudioProcess, str],
) -> None:
    server, _ = run
    stored = _stored(server.http_url, AGENT)
    assert [
        (e["agent_id"], e["session_id"], e["channel"], e["event_type"], e["event"]) for e in stored
    ] == [(AGENT, SESSION, e["channel"], e["event_type"], e) for e in DOCUMENT_EVENTS]
    cursors = [e["cursor"] for e in stored]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


def test_envelope_event_is_stored_with_its_agent_and_session(
    run: tuple[StudioProcess, str],
) -> None:
    server, _ = run
    stored = _stored(server.http_url, ENVELOPE_AGENT)
    assert [
        (e["agent_id"], e["session_id"], e["channel"], e["event_type"], e["event"]) for e in stored
    ] == [(ENVELOPE_AGENT, ENVELOPE_SESSION, "progress", "text_chunk", ENVELOPE_EVENT)]


def test_registered_agent_keeps_name_model_and_capabilities(
    run: tuple[StudioProcess, str],
) -> None:
    server, _ = run
    agent = get(server.http_url, f"/v1/dashboard/agents/{AGENT}")
    assert (agent["name"], agent["model"], agent["capabilities"]) == (
        "Writing Agent",
        "claude-3-5-sonnet",
        ["writing", "editing"],
    )
    assert agent["current_session_id"] == SESSION


def test_state_changed_event_makes_the_agent_working(run: tuple[StudioProcess, str]) -> None:
    server, _ = run
    agent = get(server.http_url, f"/v1/dashboard/agents/{AGENT}")
    assert agent["state"] == "working"
    assert (agent["event_count"], agent["error_count"]) == (4, 1)


def test_token_usage_is_recorded_with_the_registered_models_cost(
    run: tuple[StudioProcess, str],
) -> None:
    server, _ = run
    agent = get(server.http_url, f"/v1/dashboard/agents/{AGENT}")
    assert agent["token_usage"] == tokens(100, 50)
    assert agent["cost"]["amount"] == pytest.approx(EXPECTED_COST)
    assert agent["unpriced_tokens"] == 0
    metrics = get(server.http_url, f"/v1/dashboard/metrics/tokens?agent_id={AGENT}")
    by_model = metrics["by_model"]["claude-3-5-sonnet"]
    assert (by_model["input"], by_model["output"], by_model["priced"]) == (100, 50, True)


def test_sessions_of_both_shapes_are_listed_with_their_agents(
    run: tuple[StudioProcess, str],
) -> None:
    server, _ = run
    sessions = {s["id"]: s for s in get(server.http_url, "/v1/dashboard/sessions")["sessions"]}
    assert sessions[SESSION]["agent_id"] == AGENT
    assert sessions[SESSION]["created_at"] == "2024-01-01T12:00:00.000Z"
    assert sessions[SESSION]["event_count"] == len(DOCUMENT_EVENTS)
    assert sessions[SESSION]["cost"]["amount"] == pytest.approx(EXPECTED_COST)
    assert sessions[ENVELOPE_SESSION]["agent_id"] == ENVELOPE_AGENT
    assert sessions[ENVELOPE_SESSION]["event_count"] == 1
