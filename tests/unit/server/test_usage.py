"""Reading a `token_usage` event's counts, and costing them: every kind of token counted once."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aster_studio.ingest.registry import LiveAgent, Registry
from aster_studio.ingest.service import MAX_TOKENS, read_usage
from aster_studio.models import Price, Usage, UsageTotals, money
from aster_studio.pricing import DEFAULT_PRICES, PriceTable


def counts(**event: Any) -> tuple[int, int, int, int, int]:
    usage, _ = read_usage(event, "m")
    return usage.input, usage.output, usage.cache_read, usage.cache_creation, usage.reasoning


def test_anthropic_cache_tokens_come_on_top_of_the_input() -> None:
    usage, bad = read_usage(
        {
            "input_tokens": 10,
            "output_tokens": 100,
            "cache_read_input_tokens": 50_000,
            "cache_creation_input_tokens": 2_000,
        },
        "claude-3-5-sonnet-20241022",
    )
    assert (usage.input, usage.cache_read, usage.cache_creation, usage.total) == (
        10,
        50_000,
        2_000,
        52_110,
    )
    assert bad == []


def test_openai_cached_tokens_within_the_prompt_are_taken_out_of_the_input() -> None:
    # OpenAI's prompt_tokens hold the cached ones, and its total is prompt + completion.
    assert counts(
        input_tokens=1000, output_tokens=100, total_tokens=1100, cache_read_input_tokens=800
    ) == (200, 100, 800, 0, 0)


def test_reasoning_tokens_are_part_of_the_output_counted_once() -> None:
    assert counts(input_tokens=10, output_tokens=3000, reasoning_tokens=2500) == (
        10,
        3000,
        0,
        0,
        2500,
    )


def test_reasoning_tokens_above_the_output_came_apart_and_are_added() -> None:
    assert counts(input_tokens=10, output_tokens=50, reasoning_tokens=200)[1] == 250


def test_the_total_above_the_parts_adds_the_rest_to_the_output() -> None:
    assert counts(input_tokens=100, total_tokens=150) == (100, 50, 0, 0, 0)
    # Gemini: thoughts apart from the candidates, in the total.
    assert (
        counts(input_tokens=100, output_tokens=20, reasoning_tokens=10, total_tokens=130)[1] == 30
    )


def test_a_total_alone_is_counted_but_unpriced() -> None:
    usage, _ = read_usage({"total_tokens": 1000}, "gpt-4o")
    assert (usage.input, usage.output, usage.priceable) == (1000, 0, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1e3", 1000), (" 250", 250), ("7", 7), (12.0, 12), (3, 3), (None, 0)],
)
def test_plausible_serializations_are_read(value: Any, expected: int) -> None:
    usage, bad = read_usage({"input_tokens": value}, "m")
    assert (usage.input, bad) == (expected, [])


@pytest.mark.parametrize("value", [-5, "abc", {"n": 5}, True, float("nan"), "-3", [1]])
def test_a_value_that_is_no_count_counts_as_absent_and_is_reported(value: Any) -> None:
    usage, bad = read_usage({"input_tokens": value, "output_tokens": 100}, "m")
    assert (usage.input, usage.output, bad) == (0, 100, ["input_tokens"])


def test_a_count_over_the_cap_is_capped_and_reported() -> None:
    usage, bad = read_usage({"input_tokens": 2 * 10**10}, "m")
    assert (usage.input, bad) == (MAX_TOKENS, ["input_tokens"])


def test_cache_tokens_are_priced_at_the_providers_rates() -> None:
    table = PriceTable(DEFAULT_PRICES)
    sonnet = table.lookup("claude-3-5-sonnet-20241022")
    assert sonnet is not None
    # Anthropic: a read at a tenth of the input rate, a write at 1.25 times it.
    assert sonnet.cost(10, 100, 50_000, 2_000) == pytest.approx(0.02403)
    gpt = table.lookup("gpt-4o-2024-08-06")
    assert gpt is not None and gpt.cache_prices() == (1.25, 2.5)  # cached input at half
    assert Price("house", 2.0, 4.0).cache_prices() == (2.0, 2.0)  # unknown provider: input rate


def test_a_set_cache_rate_wins_over_the_default() -> None:
    price = Price("claude-x", 3.0, 15.0, "USD", cache_read_per_m=1.0)
    assert price.cache_prices() == (1.0, 3.75)
    assert price.to_api()["cache_read_price_per_m"] == 1.0


def test_unpriced_usage_counts_its_cache_tokens_as_unpriced() -> None:
    totals = UsageTotals()
    totals.add(Usage("m", 10, 5, cache_read=100))
    assert totals.unpriced_tokens == totals.total == 115
    assert totals.money()["amount"] is None


def test_an_infinite_cost_is_shown_as_the_largest_finite_one() -> None:
    amount = money(math.inf, 10, 0)["amount"]
    assert amount is not None and math.isfinite(amount)


def test_a_deleted_agent_that_returns_has_its_usage_again() -> None:
    registry = Registry()
    first = LiveAgent("a", 1, 1)
    registry.add(first)
    first.usage.add(Usage("m", 1000, 1000, cost=0.5))
    registry.forget("a")
    back = LiveAgent("a", 2, 2)
    registry.add(back)
    assert (back.usage.input, back.usage.cost) == (1000, 0.5)


def test_usage_of_deleted_agents_loaded_at_start_waits_for_their_return() -> None:
    registry = Registry()
    registry.load([], {"gone": UsageTotals(input=7)})
    back = LiveAgent("gone", 2, 2)
    registry.add(back)
    assert back.usage.input == 7
