"""Price lookup: exact entry, dated alias, family rule, else unpriced (never an invented price)."""

from __future__ import annotations

import pytest

from aster_studio.models import Price
from aster_studio.pricing import DEFAULT_PRICES, PriceTable


@pytest.fixture
def table() -> PriceTable:
    return PriceTable(DEFAULT_PRICES)


def test_exact_entry_wins(table: PriceTable) -> None:
    price = table.lookup("gpt-4o-mini")
    assert price is not None and (price.input_per_m, price.output_per_m) == (0.15, 0.6)


def test_undated_name_uses_the_dated_entry(table: PriceTable) -> None:
    price = table.lookup("claude-3-5-sonnet")
    assert price is not None and (price.input_per_m, price.output_per_m) == (3.0, 15.0)


@pytest.mark.parametrize(
    ("model", "prices"),
    [
        ("claude-opus-4-1", (15.0, 75.0)),
        ("Claude-3-Haiku", (0.8, 4.0)),
        ("gpt-4-turbo-preview", (10.0, 30.0)),
        ("gpt-3.5-turbo", (0.5, 1.5)),
        ("gemini-1.5-flash", (0.075, 0.3)),
    ],
)
def test_family_rules(table: PriceTable, model: str, prices: tuple[float, float]) -> None:
    price = table.lookup(model)
    assert price is not None and (price.input_per_m, price.output_per_m) == prices


@pytest.mark.parametrize("model", [None, "", "llama-3-70b", "my-house-model"])
def test_unknown_or_missing_model_is_unpriced(table: PriceTable, model: str | None) -> None:
    assert table.lookup(model) is None


def test_set_and_remove_apply_immediately(table: PriceTable) -> None:
    assert table.lookup("llama-3-70b") is None
    table.set(Price("llama-3-70b", 0.0, 0.0))
    price = table.lookup("llama-3-70b")
    assert price is not None and price.cost(1000, 1000) == 0.0
    assert table.remove("llama-3-70b")
    assert table.lookup("llama-3-70b") is None


def test_cost_is_per_million_tokens() -> None:
    assert Price("m", 3.0, 15.0).cost(100, 50) == pytest.approx(0.00105)


def test_another_model_sharing_the_prefix_is_not_a_release_of_it(table: PriceTable) -> None:
    """With `gpt-4o` deleted, `gpt-4o` once took `gpt-4o-mini`'s price, a sixteenth of its
    own: only a date after the name makes another release of the same model."""
    assert table.remove("gpt-4o")
    price = table.lookup("gpt-4o")
    assert price is not None and (price.input_per_m, price.output_per_m) == (2.5, 10.0)


def test_an_edited_price_covers_the_dated_releases(table: PriceTable) -> None:
    """Set for `gpt-4o`, a price applies to `gpt-4o-2024-08-06` too, before the family rule."""
    table.set(Price("gpt-4o", 5.0, 20.0))
    for model in ("gpt-4o-2024-08-06", "GPT-4o-20240513"):
        price = table.lookup(model)
        assert price is not None and (price.input_per_m, price.output_per_m) == (5.0, 20.0)
    mini = table.lookup("gpt-4o-mini-2024-07-18")
    assert mini is not None and mini.input_per_m == 0.15


def test_a_price_in_another_currency_prices_nothing(table: PriceTable) -> None:
    """A row an older release kept in EUR was summed as dollars: its model is unpriced, and
    so are its other releases, rather than costed at the family's dollar rate."""
    table.set(Price("gpt-4o", 2.0, 8.0, "EUR"))
    table.set(Price("house-model", 1.0, 1.0, "EUR"))
    for model in ("gpt-4o", "gpt-4o-2024-08-06", "house-model"):
        assert table.lookup(model) is None, model


def test_a_price_in_usd_of_any_case_applies(table: PriceTable) -> None:
    table.set(Price("house-model", 1.0, 2.0, "usd"))
    price = table.lookup("house-model")
    assert price is not None and price.cost(1_000_000, 0) == 1.0
