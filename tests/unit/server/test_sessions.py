"""The session routes over a real store, in process: what the detail reads, and what it shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from aster_studio import store as ops
from aster_studio.models import INT64_MAX, Usage, UsageQuery, UsageRow, UsageTotals
from aster_studio.store import SqliteStore
from tests.support.api import data_of, in_process
from tests.support.events import Numberer

# Priced by the table, by a family rule, not at all, and with no model.
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-haiku", "house-model", None)


class CountingStore:
    """A SQLite store that notes each read of usage.

    It wraps the store rather than subclassing it: `make native` compiles SqliteStore, and
    compiled classes take no Python subclasses.
    """

    def __init__(self, path: Path) -> None:
        self.real = SqliteStore(path, synchronous="NORMAL")
        self.usage_reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def session_usage(self, session_ids: list[str]) -> dict[str, UsageTotals]:
        self.usage_reads.append("session_usage")
        return self.real.session_usage(session_ids)

    def usage_rows(self, query: UsageQuery) -> list[UsageRow]:
        self.usage_reads.append("usage_rows")
        return self.real.usage_rows(query)


def seed(path: Path) -> None:
    """One session with 200 usage events of every kind of model, another with none."""
    numbers = Numberer()
    store = SqliteStore(path, synchronous="NORMAL")
    store.open()
    try:
        store.write([ops.UpsertAgent("a", 1, name="Alpha"), ops.UpsertSession("s", "a", 1)])
        store.write([ops.UpsertSession("quiet", "a", 1)])
        writes: list[ops.WriteOp] = []
        for i in range(200):
            event = numbers.event("a", "token_usage", 1_000 + i, session="s")
            usage = Usage(MODELS[i % len(MODELS)], 37 * i + 11, 13 * i + 7)
            writes += [event, ops.RecordUsage(event.id, "a", "s", event.ts, usage)]
        store.write(writes)
    finally:
        store.close()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, CountingStore]]:
    path = tmp_path / "s.db"
    seed(path)
    store = CountingStore(path)
    async with in_process(cast(SqliteStore, store)) as http:
        yield http, store


async def test_session_detail_reads_its_usage_once(
    client: tuple[httpx.AsyncClient, CountingStore],
) -> None:
    """The totals were one query and the figures by model another, over the same rows."""
    http, store = client
    await data_of(http, "/v1/dashboard/sessions/s")
    assert store.usage_reads == ["usage_rows"]


@pytest.mark.parametrize("session_id", ["s", "quiet"])
async def test_session_detail_usage_is_what_the_two_queries_gave(
    client: tuple[httpx.AsyncClient, CountingStore], session_id: str
) -> None:
    """Its totals are the session's as the list reads them (its own query, the detail's
    before), to the last digit, and its figures by model are each model's rows."""
    http, store = client
    detail = await data_of(http, f"/v1/dashboard/sessions/{session_id}")
    (listed,) = [
        s
        for s in (await data_of(http, "/v1/dashboard/sessions?limit=10"))["sessions"]
        if s["id"] == session_id
    ]
    totals = store.session_usage([session_id]).get(session_id, UsageTotals())
    expected = {
        "token_usage": totals.tokens(),
        "cost": totals.money(),
        "unpriced_tokens": totals.unpriced_tokens,
    }
    assert {k: detail[k] for k in expected} == {k: listed[k] for k in expected} == expected
    rows = store.usage_rows(UsageQuery(0, INT64_MAX, session_id=session_id, group_by="model"))
    assert detail["cost_by_model"] == {str(r.key or "(unknown)"): r.money() for r in rows}
    assert detail["tokens_by_model"] == {str(r.key or "(unknown)"): r.tokens() for r in rows}
    if session_id == "s":  # every kind of cost: priced, some unpriced, none priced
        assert detail["cost"]["amount"] > 0 and detail["unpriced_tokens"] > 0
        assert detail["cost_by_model"]["house-model"]["amount"] is None
