"""Model prices: the editable table, its defaults, and the lookup that never invents a price."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from .models import Price

# USD per million tokens. The dated names are the original Studio's defaults; the undated
# aliases are what agents usually report.
DEFAULT_PRICES: tuple[Price, ...] = (
    Price("claude-3-5-sonnet-20241022", 3.0, 15.0),
    Price("claude-3-5-haiku-20241022", 0.8, 4.0),
    Price("claude-sonnet-4-20250514", 3.0, 15.0),
    Price("gpt-4o", 2.5, 10.0),
    Price("gpt-4o-mini", 0.15, 0.6),
    Price("deepseek-chat", 0.14, 0.28),
)

# Family rules: (all substrings that must appear, input, output). Tried after the table, in
# order. Unlike the original Studio there is no catch-all: an unknown model stays unpriced.
_FAMILIES: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("claude", "opus"), 15.0, 75.0),
    (("claude", "sonnet"), 3.0, 15.0),
    (("claude", "haiku"), 0.8, 4.0),
    (("gpt-4", "mini"), 0.15, 0.6),
    (("gpt-4", "turbo"), 10.0, 30.0),
    (("gpt-4",), 2.5, 10.0),
    (("gpt-3.5",), 0.5, 1.5),
    (("deepseek",), 0.14, 0.28),
    (("gemini", "pro"), 1.25, 5.0),
    (("gemini", "flash"), 0.075, 0.3),
)


# A release date at the end of a model's name: `-20241022` or `-2024-08-06`.
_DATED = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def undated(model: str) -> str:
    """The model's name without its release date, lowercased: what its dated versions share."""
    return _DATED.sub("", model.lower())


class PriceTable:
    """Resolve a model name to a price: exact entry, then an entry for another release of the
    same model (`gpt-4o` and `gpt-4o-2024-08-06`, not `gpt-4o-mini`), then a family rule,
    else None (unpriced); an entry in a currency other than USD prices nothing."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._prices: dict[str, Price] = {p.model: p for p in prices}
        self._cache: dict[str, Price | None] = {}
        self._releases: dict[str, Price] = {}
        self._index()

    def _index(self) -> None:
        """Each undated name's entry: the undated one if the table has it, else the newest."""
        self._cache.clear()
        self._releases.clear()
        for entry in sorted(self._prices.values(), key=lambda p: p.model.lower()):
            name = undated(entry.model)
            current = self._releases.get(name)
            if current is None or current.model.lower() != name:
                self._releases[name] = entry

    @property
    def entries(self) -> Mapping[str, Price]:
        return self._prices

    def set(self, price: Price) -> None:
        self._prices[price.model] = price
        self._index()

    def remove(self, model: str) -> bool:
        removed = self._prices.pop(model, None) is not None
        self._index()
        return removed

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self._prices.get(model) or self._by_family(model)
        if price is not None and not price.in_usd:
            # A row an older release kept in another currency: costs are added up in US
            # dollars, with no exchange rate. Its model is unpriced, neither summed as dollars
            # nor costed at its family's rate, until its price is saved in USD.
            price = None
        if len(self._cache) < 10_000:
            self._cache[model] = price
        return price

    def _by_family(self, model: str) -> Price | None:
        release = self._releases.get(undated(model))
        if release is not None:
            return replace(release, model=model)
        lowered = model.lower()
        for needles, input_per_m, output_per_m in _FAMILIES:
            if all(n in lowered for n in needles):
                return Price(model, input_per_m, output_per_m)
        return None
