"""Token usage through the real server: every kind of token counted and priced, at the agent's
time, under whatever case of its type, and the same in an agent's view and in the metrics."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, get, tokens, wait_for
from tests.support.databases import Databases
from tests.support.server import StudioProcess


@pytest.fixture(scope="module")
def server(module_db: Databases) -> Iterator[StudioProcess]:
    studio = StudioProcess(module_db("usage")).start()
    yield studio
    studio.stop()


def send(server: StudioProcess, agent_id: str, *events: dict[str, Any], **agent: Any) -> None:
    """Register `agent_id`, send `events`, and wait until they are stored."""
    with RawAgent(server.agent_url) as raw:
        raw.request(register(agent_id, **agent))
        for message in events:
            raw.send(message)
        assert raw.request({"type": "ping"}) == {"type": "pong"}


def view(server: StudioProcess, agent_id: str, inputs: int) -> Any:
    """The agent's view, once its usage holds `inputs` input tokens (counted after commit)."""
    return wait_for(
        lambda: get(server.http_url, f"/v1/dashboard/agents/{agent_id}"),
        lambda v: v["token_usage"]["input"] == inputs,
    )


def metric(server: StudioProcess, route: str, **query: Any) -> Any:
    return get(server.http_url, f"/v1/dashboard/metrics/{route}?{urllib.parse.urlencode(query)}")


def test_cache_tokens_are_counted_priced_and_shown(server: StudioProcess) -> None:
    send(
        server,
        "u-cache",
        event(
            "u-cache",
            "token_usage",
            input_tokens=10,
            output_tokens=100,
            cache_read_input_tokens=50_000,
            cache_creation_input_tokens=2_000,
        ),
        model="claude-3-5-sonnet-20241022",
    )
    expected = tokens(10, 100, cache_read=50_000, cache_creation=2_000)
    agent = view(server, "u-cache", 10)
    assert agent["token_usage"] == expected
    # 10 in @3 + 100 out @15 + 50,000 cache reads @0.30 + 2,000 cache writes @3.75 ($/M)
    assert agent["cost"]["amount"] == pytest.approx(0.02403)
    assert metric(server, "tokens", agent_id="u-cache")["total"] == expected
    assert metric(server, "costs", agent_id="u-cache")["total"]["amount"] == pytest.approx(0.02403)
    price = get(server.http_url, "/v1/dashboard/pricing")["claude-3-5-sonnet-20241022"]
    assert price["cache_read_price_per_m"] == pytest.approx(0.3)
    assert price["cache_write_price_per_m"] == pytest.approx(3.75)


def test_a_set_cache_rate_prices_the_cache_from_then_on(server: StudioProcess) -> None:
    body = {
        "model": "house-cache",
        "input_price_per_m": 2,
        "output_price_per_m": 4,
        "cache_read_price_per_m": 1,
    }
    status, reply = call(server.http_url, "/v1/dashboard/pricing", "PUT", body)
    assert status == 200 and reply["data"]["pricing"]["cache_read_price_per_m"] == 1
    # Not given: the input rate (no known provider's discount).
    assert reply["data"]["pricing"]["cache_write_price_per_m"] == 2
    send(
        server,
        "u-house",
        event("u-house", "token_usage", input_tokens=1, cache_read_input_tokens=1_000_000),
        model="house-cache",
    )
    assert view(server, "u-house", 1)["cost"]["amount"] == pytest.approx(1.000002)


def test_usage_is_filed_at_the_agents_own_time(server: StudioProcess) -> None:
    used_at = int(time.time() * 1000) - 3 * 3_600_000  # resent after a three-hour outage
    send(
        server,
        "u-late",
        event("u-late", "token_usage", input_tokens=5, output_tokens=5, timestamp=used_at),
    )
    view(server, "u-late", 5)
    around = metric(server, "tokens", agent_id="u-late", start=used_at - 1000, end=used_at + 1000)
    assert around["total"]["input"] == 5
    assert metric(server, "tokens", agent_id="u-late", period="1h")["total"]["input"] == 0


@pytest.mark.parametrize("fast_ms", [30_000, 86_400_000])
def test_usage_stamped_ahead_is_filed_at_its_receive_time(
    server: StudioProcess, fast_ms: int
) -> None:
    """A clock 30 s fast filed the usage 30 s ahead: every window ending now left it out."""
    agent = f"u-ahead-{fast_ms}"
    ahead = int(time.time() * 1000) + fast_ms
    send(server, agent, event(agent, "token_usage", input_tokens=3, timestamp=ahead))
    view(server, agent, 3)
    assert metric(server, "tokens", agent_id=agent, period="1h")["total"]["input"] == 3


def test_a_deleted_agent_that_returns_shows_the_usage_its_metrics_sum(
    server: StudioProcess,
) -> None:
    send(server, "u-del", event("u-del", "token_usage", input_tokens=1000, output_tokens=1000))
    view(server, "u-del", 1000)
    assert call(server.http_url, "/v1/agents/u-del", "DELETE")[0] == 204
    send(server, "u-del", event("u-del", "token_usage", input_tokens=10, output_tokens=10))
    agent = view(server, "u-del", 1010)
    assert agent["token_usage"] == metric(server, "tokens", agent_id="u-del")["total"]
    assert agent["token_usage"] == tokens(1010, 1010)


@pytest.mark.parametrize("spelling", ["TOKEN_USAGE", "Token_Usage"])
def test_token_usage_of_any_case_is_counted(server: StudioProcess, spelling: str) -> None:
    agent_id = f"u-case-{spelling}"
    send(server, agent_id, event(agent_id, spelling, input_tokens=100))
    assert view(server, agent_id, 100)["token_usage"]["input"] == 100


def test_state_changed_of_any_case_sets_the_state(server: StudioProcess) -> None:
    send(server, "u-state", event("u-state", "STATE_CHANGED", state="working"))
    wait_for(
        lambda: get(server.http_url, "/v1/dashboard/agents/u-state"),
        lambda v: v["state"] == "working",
    )


@pytest.mark.parametrize(
    "field",
    [
        "input_price_per_m",
        "output_price_per_m",
        "cache_read_price_per_m",
        "cache_write_price_per_m",
    ],
)
@pytest.mark.parametrize("value", [1e300, 1_000_001, -1])
def test_a_price_out_of_bounds_is_refused(server: StudioProcess, field: str, value: float) -> None:
    body = {"model": "huge", "input_price_per_m": 1, "output_price_per_m": 1, field: value}
    status, reply = call(server.http_url, "/v1/dashboard/pricing", "PUT", body)
    assert status == 400 and field in reply["error"]["message"]


def test_the_unknown_model_filter_selects_the_usage_without_a_model(
    server: StudioProcess,
) -> None:
    send(server, "u-nomodel", event("u-nomodel", "token_usage", input_tokens=700))
    view(server, "u-nomodel", 700)
    both = metric(server, "tokens", agent_id="u-nomodel")
    assert list(both["by_model"]) == ["(unknown)"]
    only = metric(server, "tokens", agent_id="u-nomodel", model="(unknown)")
    assert only["total"]["input"] == 700
    assert (
        metric(server, "costs", agent_id="u-nomodel", model="(unknown)")["unpriced_tokens"] == 700
    )


def test_token_counts_that_are_no_counts_are_counted_in_metrics(server: StudioProcess) -> None:
    def invalid() -> int:
        with urllib.request.urlopen(f"{server.http_url}/metrics") as response:
            for line in response.read().decode().splitlines():
                if line.startswith("aster_token_counts_invalid_total "):
                    return int(line.split()[1])
        raise AssertionError("no aster_token_counts_invalid_total")

    before = invalid()
    send(
        server,
        "u-bad",
        event("u-bad", "token_usage", input_tokens=-5000, output_tokens="abc", total_tokens=7),
    )
    # The valid rest is counted: the total above the parts goes to the output.
    wait_for(
        lambda: get(server.http_url, "/v1/dashboard/agents/u-bad"),
        lambda v: v["token_usage"]["total"] == 7,
    )
    assert invalid() == before + 2
