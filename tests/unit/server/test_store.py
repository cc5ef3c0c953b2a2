"""The Store contract, run against every backend: SQLite, and PostgreSQL when a server runs
(tests.support.postgres); then each backend's own behaviour (files, locks, migrations)."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import cast

import apsw
import orjson
import pytest

from aster_studio import store as ops
from aster_studio.errors import DatabaseInUse, MigrationError, StoreError
from aster_studio.models import (
    AgentKey,
    ConsoleSession,
    EventFilter,
    Price,
    StoredEvent,
    Usage,
    UsageQuery,
    session_outcome,
)
from aster_studio.store import SqliteStore, Store
from aster_studio.store.sqlite import ID_BLOCK, _scalar
from tests.support.events import Numberer
from tests.support.postgres import fresh_schema, postgres_dsn

# A new store on one database each call, not yet opened (`posting_events`: SQLite's only).
Opener = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Stores on one database of each backend, for tests that close and reopen it."""
    if request.param == "sqlite":
        path = tmp_path / "s.db"

        def sqlite(*, posting_events: int | None = None) -> Store:
            if posting_events is None:
                return SqliteStore(path, synchronous="NORMAL")
            return SqliteStore(path, synchronous="NORMAL", posting_events=posting_events)

        yield sqlite
        return
    from aster_studio.store.postgres import PostgresStore

    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:

        def postgres(*, posting_events: int | None = None) -> Store:
            return PostgresStore(dsn, schema=schema)

        yield postgres


@pytest.fixture
def store(database: Opener) -> Iterator[Store]:
    backend = database()
    backend.open()
    yield backend
    backend.close()


NUMBERS = Numberer()


@pytest.fixture(autouse=True)
def _number_from_one() -> None:
    global NUMBERS
    NUMBERS = Numberer()


def ev(
    agent: str = "a",
    etype: str = "x",
    ts: int = 1000,
    *,
    session: str | None = None,
    severity: str | None = None,
    **body: object,
) -> StoredEvent:
    payload = {"event_type": etype, **body}
    if severity is not None:
        payload["severity"] = severity
    return NUMBERS.event(agent, etype, ts, session=session, severity=severity, payload=payload)


def usage_event(model: str, ts: int, tokens: tuple[int, int]) -> list[ops.WriteOp]:
    event = ev("a", "token_usage", ts)
    return [event, ops.RecordUsage(event.id, "a", None, ts, Usage(model, *tokens))]


def test_writes_return_their_events_in_order(store: Store) -> None:
    first = store.write([ev(), ev()])
    second = store.write([ev()])
    assert [e.id for e in first.events + second.events] == [1, 2, 3]


def reopen(database: Opener, *, release: bool) -> tuple[Store, int]:
    """Open a store on `database`, reserve ids as the server does, and write two events."""
    one = database()
    one.open()
    first = one.reserve_event_ids()
    one.write([NUMBERS.event(), NUMBERS.event()])
    if release:
        one.release_event_ids()
    one.close()
    two = database()
    two.open()
    return two, first


def test_ids_continue_after_a_clean_stop(database: Opener) -> None:
    two, first = reopen(database, release=True)
    assert first == 1
    assert two.reserve_event_ids() == 3
    two.close()


def test_ids_after_a_crash_pass_every_id_handed_out_before(database: Opener) -> None:
    # Events are shown live before they are committed: after a crash, ids may have been seen
    # that the store never got. The next run starts past the whole reservation.
    two, _ = reopen(database, release=False)
    assert two.reserve_event_ids() == 1 + ID_BLOCK + 1
    two.close()


def test_the_reservation_keeps_ahead_of_the_ids_written(database: Opener) -> None:
    one = database()
    one.open()
    first = one.reserve_event_ids()
    far = Numberer(first + ID_BLOCK)  # more numbered than half the reservation
    one.write([far.event()])
    one.close()  # a crash: no release
    two = database()
    two.open()
    assert two.reserve_event_ids() > first + ID_BLOCK + ID_BLOCK // 2
    two.close()


def test_payload_round_trips_exactly(store: Store) -> None:
    store.write([ev(text="héllo <b>", nested={"k": [1, 2.5, None, True]})])
    (stored,) = store.events_after(EventFilter(), 0, 10)
    import orjson

    assert orjson.loads(stored.payload) == {
        "event_type": "x",
        "text": "héllo <b>",
        "nested": {"k": [1, 2.5, None, True]},
    }


def test_events_before_is_newest_first_and_after_oldest_first(store: Store) -> None:
    store.write([ev(i=i) for i in range(5)])
    assert [e.id for e in store.events_before(EventFilter(), None, 3)] == [5, 4, 3]
    assert [e.id for e in store.events_before(EventFilter(), 3, 10)] == [2, 1]
    assert [e.id for e in store.events_after(EventFilter(), 2, 2)] == [3, 4]


def test_filters_combine(store: Store) -> None:
    store.write([ev("a", "x", 1000), ev("b", "x", 2000), ev("b", "error", 3000, severity="error")])
    assert store.count_events(EventFilter(agent_ids=("b",))) == 2
    assert store.count_events(EventFilter(agent_ids=("b",), event_types=("x",))) == 1
    assert store.count_events(EventFilter(severities=("error",))) == 1
    assert store.count_events(EventFilter(start_ms=2000)) == 2
    assert store.count_events(EventFilter(end_ms=2000)) == 1


def test_text_search_treats_wildcards_literally(store: Store) -> None:
    store.write([ev(msg="100% sure"), ev(msg="100 percent"), ev(msg="a_b"), ev(msg="axb")])
    assert store.count_events(EventFilter(text="100%")) == 1
    assert store.count_events(EventFilter(text="a_b")) == 1


def test_session_counts_and_end(store: Store) -> None:
    store.write([ops.UpsertAgent("a", 1), ops.UpsertSession("s", "a", 1)])
    store.write([ev(session="s"), ev(session="s"), ops.EndSession("s", "failed", 5)])
    session = store.get_session("s")
    assert session is not None
    assert (session.event_count, session.status, session.ended_at) == (2, "failed", 5)


@pytest.mark.parametrize(
    "times", [(10, 20, 30, 40, 50), (10, 40, 30, 20, 15)], ids=["rising", "stepped-back"]
)
def test_one_write_counts_events_per_agent_and_session_with_the_latest_time(
    store: Store, times: tuple[int, ...]
) -> None:
    # The wall clock can step back between two events of one commit: times are maxima anyway.
    sessions = [ops.UpsertSession(s, a, 1) for a, s in (("a", "s1"), ("a", "s2"), ("b", "s3"))]
    store.write([ops.UpsertAgent("a", 1), ops.UpsertAgent("b", 1), *sessions])
    t1, t2, t3, t4, t5 = times
    store.write(
        [
            ev("a", "x", 1),  # no session
            ev("a", "error", t1, session="s1"),
            ev("b", "x", t2, session="s3"),
            ev("a", "x", t3, session="s1"),
            ev("a", "error", t4, session="s2"),
            ev("b", "x", t5, session="s3"),
        ]
    )
    agents = {a.id: (a.event_count, a.error_count, a.last_event_at) for a in store.load_agents()}
    assert agents == {"a": (4, 2, max(t1, t3, t4)), "b": (2, 0, max(t2, t5))}
    counted = {}
    for session_id in ("s1", "s2", "s3"):
        session = store.get_session(session_id)
        assert session is not None
        counted[session_id] = (session.event_count, session.updated_at)
    assert counted == {"s1": (2, max(t1, t3)), "s2": (1, t4), "s3": (2, max(t2, t5))}


def test_usage_is_priced_at_write_time(store: Store) -> None:
    unpriced = store.write(usage_event("house", 10, (1_000_000, 0)))
    store.write([ops.SetPrice(Price("house", 2.0, 4.0), 11)])
    priced = store.write(usage_event("house", 12, (1_000_000, 1_000_000)))
    assert [u.cost for _, u in unpriced.usage + priced.usage] == [None, 6.0]
    (row,) = store.usage_rows(UsageQuery(0, 100))
    assert row.cost == 6.0
    assert row.unpriced_tokens == 1_000_000
    by_agent = store.usage_by_agent()["a"]
    assert (by_agent.input, by_agent.output, by_agent.requests) == (2_000_000, 1_000_000, 2)


def test_usage_of_a_range_of_events_is_read_as_it_was_priced(store: Store) -> None:
    """What a Studio of a cluster counts of events it read from the database."""
    first = store.write(usage_event("house", 10, (1_000_000, 0)))
    store.write([ev()])
    store.write([ops.SetPrice(Price("house", 2.0, 4.0), 11)])
    last = store.write(usage_event("house", 12, (1_000_000, 1_000_000)))
    start, end = first.events[0].id, last.events[0].id
    assert store.usage_of_events(start, end) == [
        (start, "a", Usage("house", 1_000_000, 0, cost=None)),
        (end, "a", Usage("house", 1_000_000, 1_000_000, cost=6.0)),
    ]
    assert store.usage_of_events(start + 1, end - 1) == []


def test_usage_of_a_model_priced_in_another_currency_is_unpriced(database: Opener) -> None:
    """A price row an older release kept in EUR (the API takes USD only now) was added to the
    dollar totals as if in dollars: its model's tokens are unpriced, before and after
    reopening."""
    store = database()
    store.open()
    try:
        store.write([ops.SetPrice(Price("house", 2.0, 4.0, "EUR"), 1)])
        store.write(usage_event("house", 10, (1_000_000, 0)))
    finally:
        store.close()
    store = database()
    store.open()
    try:
        store.write(usage_event("house", 11, (0, 1_000_000)))
        (row,) = store.usage_rows(UsageQuery(0, 100))
        assert (row.cost, row.unpriced_tokens) == (0.0, 2_000_000)
        assert row.money() == {"amount": None, "currency": "USD", "unpriced_tokens": 2_000_000}
    finally:
        store.close()


def test_usage_groups_by_model_and_bucket(store: Store) -> None:
    store.write(
        usage_event("gpt-4o", 0, (10, 1))
        + usage_event("gpt-4o", 150, (10, 1))
        + usage_event("gpt-4o-mini", 250, (10, 1))
    )
    models = {r.key: r.input for r in store.usage_rows(UsageQuery(0, 1000, group_by="model"))}
    assert models == {"gpt-4o": 20, "gpt-4o-mini": 10}
    buckets = [(r.key, r.requests) for r in store.usage_rows(UsageQuery(0, 1000, bucket_ms=100))]
    assert buckets == [(0, 1), (100, 1), (200, 1)]


def test_producer_seq_only_moves_forward(store: Store) -> None:
    store.write([ops.MarkProducer("p", 5)])
    store.write([ops.MarkProducer("p", 3)])
    assert store.producer_seq("p") == 5
    assert store.producer_seq("unknown") == 0


def test_agent_upsert_keeps_known_fields_and_counts_events(store: Store) -> None:
    store.write([ops.UpsertAgent("a", 1, name="Alpha", model="m")])
    store.write([ops.UpsertAgent("a", 2, state="working"), ev("a", "error"), ev("a")])
    (agent,) = store.load_agents()
    assert (agent.name, agent.model, agent.state) == ("Alpha", "m", "working")
    assert (agent.event_count, agent.error_count) == (2, 1)


def test_editing_an_agent_changes_only_its_name_and_metadata(store: Store) -> None:
    store.write([ops.UpsertAgent("a", 1_000, implicit=True)])
    store.write([ops.AgentState("a", "working", 2_000, "s1")])
    store.write([ops.EditAgent("a", "Alpha", {"team": "docs"})])
    (agent,) = store.load_agents()
    assert (agent.name, agent.metadata) == ("Alpha", {"team": "docs"})
    assert (agent.state, agent.last_seen, agent.current_session_id, agent.implicit) == (
        "working",
        2_000,
        "s1",
        True,
    )


def test_an_agents_last_seen_after_reopening_is_its_newest_event_if_later(
    database: Opener,
) -> None:
    """`last_seen` is written with state changes and disconnects only: after a crash it fell
    back to the registration, before the agent's last events."""
    store = database(posting_events=4)
    store.open()
    store.write([ops.UpsertAgent(a, 1_000) for a in ("counted", "pending", "quiet")])
    store.write([ev("counted", "x", 5_000) for _ in range(4)])
    store.write([ev("pending", "x", 7_000)])  # begins a round: the four above reach their row
    store.write([ops.AgentState("quiet", "ready", 9_000, None), ev("quiet", "x", 8_000)])
    store.close()  # as a crash leaves it: no disconnect written
    reopened = database(posting_events=4)
    reopened.open()
    try:
        seen = {a.id: a.last_seen for a in reopened.load_agents()}
    finally:
        reopened.close()
    assert seen == {"counted": 5_000, "pending": 7_000, "quiet": 9_000}


def _agent_counts(store: Store) -> dict[str, tuple[int, int, int | None]]:
    return {a.id: (a.event_count, a.error_count, a.last_event_at) for a in store.load_agents()}


def _session_counts(store: Store) -> list[tuple[str, int, int]]:
    """Every session's (id, event count, updated_at), in the sessions list's order."""
    sessions, total = store.list_sessions(status=None, agent_id=None, limit=100, offset=0)
    assert total == len(sessions)
    for record in sessions:
        assert store.get_session(record.id) == record
    return [(r.id, r.event_count, r.updated_at) for r in sessions]


def test_counts_are_exact_across_postings_and_reopening(database: Opener) -> None:
    """Agents' and sessions' counts reach their rows with the postings; until then the reads
    of sessions add what is pending, and what is pending when the store closes (or the
    process dies) is counted again from the events when it opens."""
    expected = {"a": [0, 0, 0], "b": [0, 0, 0]}
    sessions = {"sa": [0, 1], "sb": [0, 2], "idle": [0, 3]}
    ts = 100
    for round_ in range(4):  # each open writes a few commits, crossing a posting or not
        store = database(posting_events=5)
        store.open()
        if round_ == 0:
            store.write([ops.UpsertAgent("a", 1), ops.UpsertAgent("b", 1)])
            store.write([ops.UpsertSession(s, s[-1], t) for s, (_, t) in sessions.items()])
        for commit in range(round_ + 1):
            events = []
            for i in range(3):
                ts += 1
                agent, etype = ("a", "error") if (commit + i) % 3 == 0 else ("b", "x")
                events.append(ev(agent, etype, ts, session=f"s{agent}"))
                counts = expected[agent]
                counts[0] += 1
                counts[1] += etype == "error"
                counts[2] = ts
                sessions[f"s{agent}"] = [sessions[f"s{agent}"][0] + 1, ts]
            store.write(list(events))
            assert _agent_counts(store) == {k: tuple(v) for k, v in expected.items()}
            newest_first = sorted(sessions.items(), key=lambda kv: -kv[1][1])
            assert _session_counts(store) == [(k, n, t) for k, (n, t) in newest_first]
        store.close()
    reopened = database(posting_events=5)
    reopened.open()
    try:
        assert _agent_counts(reopened) == {k: tuple(v) for k, v in expected.items()}
        newest_first = sorted(sessions.items(), key=lambda kv: -kv[1][1])
        assert _session_counts(reopened) == [(k, n, t) for k, (n, t) in newest_first]
    finally:
        reopened.close()


def test_sessions_list_pages_and_filters_with_counts_pending(database: Opener) -> None:
    """Sessions whose events wait in memory move up the list as their rows would: every
    page, filter and offset gives what the same query over counted rows gives."""
    store = database(posting_events=10_000)
    store.open()
    try:
        store.write([ops.UpsertAgent(a, 1) for a in "ab"])
        store.write([ops.UpsertSession(f"s{i}", "ab"[i % 2], 10 + i) for i in range(12)])
        store.write([ops.EndSession("s3", "completed", 30), ops.EndSession("s8", "failed", 31)])
        # Events for some sessions, old and new, one of them ended: none posted yet.
        store.write([ev("a", "x", 40, session="s0"), ev("b", "x", 25, session="s5")])
        store.write([ev("b", "x", 50, session="s3"), ev("a", "x", 45, session="s10")])
        counted = {"s0": (1, 40), "s5": (1, 25), "s3": (1, 50), "s10": (1, 45)}
        full, _ = store.list_sessions(status=None, agent_id=None, limit=100, offset=0)
        if isinstance(store, SqliteStore):
            assert store._pending_sessions[1]  # the reads above had counts to add
        updated = {f"s{i}": 10 + i for i in range(12)} | {"s3": 30, "s8": 31}
        for session_id, (_, t) in counted.items():
            updated[session_id] = max(updated[session_id], t)
        order = sorted(updated, key=lambda s: (-updated[s], s))
        assert [r.id for r in full] == order
        assert {r.id: r.event_count for r in full} == {s: counted.get(s, (0, 0))[0] for s in order}
        for status in (None, "active", "completed"):
            for agent_id in (None, "a", "b"):
                whole, total = store.list_sessions(
                    status=status, agent_id=agent_id, limit=100, offset=0
                )
                assert total == len(whole)
                for offset in range(0, total + 1):
                    for limit in (1, 3):
                        page, _ = store.list_sessions(
                            status=status, agent_id=agent_id, limit=limit, offset=offset
                        )
                        assert page == whole[offset : offset + limit]
    finally:
        store.close()


def test_sessions_filter_by_trace_outcome_in_the_query_with_errors_pending_or_counted(
    database: Opener,
) -> None:
    """A session's trace is running while it is active, ok once completed without an error
    event, else error. The list filters by it in its query, with the errors in the rows or
    still pending, so that every page and total is the filter's over every session."""
    expected = {
        "running": ["s7", "s11", "s10", "s9", "s8"],  # s7 has an error, and still runs
        "ok": ["s5", "s4", "s2", "s0"],  # s2's `error` is a warning
        "error": ["s6", "s3", "s1"],  # failed, or completed with an error
    }

    def check(store: Store) -> None:
        everything, _ = store.list_sessions(status=None, agent_id=None, limit=100, offset=0)
        for outcome, ids in expected.items():
            assert [
                r.id for r in everything if session_outcome(r.status, r.error_count) == outcome
            ] == ids
            for agent_id in (None, "a"):
                wanted = [
                    r
                    for r in everything
                    if session_outcome(r.status, r.error_count) == outcome
                    and agent_id in (None, r.agent_id)
                ]
                for offset in range(len(wanted) + 1):
                    page, total = store.list_sessions(
                        status=None, agent_id=agent_id, limit=2, offset=offset, outcome=outcome
                    )
                    assert (page, total) == (wanted[offset : offset + 2], len(wanted))

    store = database(posting_events=6)
    store.open()
    try:
        store.write([ops.UpsertAgent(a, 1) for a in "ab"])
        store.write([ops.UpsertSession(f"s{i}", "ab"[i % 2], 10 + i) for i in range(12)])
        ended = [ops.EndSession(f"s{i}", "completed", 40 + i) for i in range(6)]
        store.write([*ended, ops.EndSession("s6", "failed", 50)])
        store.write(
            [
                ev("b", "error", 20, session="s1"),
                ev("a", "error", 21, session="s2", severity="warn"),
                ev("b", "Error", 22, session="s3", severity="fatal"),
                ev("b", "error", 23, session="s7"),
            ]
        )
        if isinstance(store, SqliteStore):
            assert store._pending_sessions[1]  # not in the rows yet
        check(store)
        store.write([ev("a", "x", 24), ev("a", "x", 25), ev("a", "x", 26)])
        store.write([ev("a", "x", 27)])  # a posting round: the errors in the rows
        if isinstance(store, SqliteStore):
            assert not store._pending_sessions[1]
        check(store)
        counted = {"s1": 1, "s2": 0, "s3": 1, "s7": 1}
        assert {s: store.get_session(s).error_count for s in counted} == counted  # type: ignore[union-attr]
    finally:
        store.close()
    store = database(posting_events=6)
    store.open()
    try:
        check(store)
    finally:
        store.close()


def test_schema_11_counts_the_errors_of_sessions_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_studio.store import sqlite as backend

    path = tmp_path / "v10.db"
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:10])
    old = SqliteStore(path)
    old.open()
    old.write([ops.UpsertAgent("a", 1), ops.UpsertSession("s", "a", 1)])
    old.write([ev("a", "error", 5, session="s"), ev("a", "ERROR", 6, session="s")])
    old.write([ev("a", "error", 7, session="s", severity="info")])
    old.write([ev("a", "error", 8, session="s")])
    old.close()
    with closing(apsw.Connection(str(path))) as conn:  # as that release counted the first 3
        conn.execute("UPDATE sessions SET event_count = 3, updated_at = 7")
        conn.execute("UPDATE meta SET value = 3 WHERE name = 'counted_through'")
    monkeypatch.undo()

    new = SqliteStore(path)
    new.open()
    try:
        session = new.get_session("s")
        assert session is not None and (session.event_count, session.error_count) == (4, 3)
    finally:
        new.close()


def test_schema_14_indexes_the_rare_types_whatever_their_case_and_reads_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting a week's errors read every event of the week: the few types read by type
    alone are indexed, those stored before the upgrade too, in any case."""
    from aster_studio.store import sqlite as backend

    path = tmp_path / "v13.db"
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:13])
    old = SqliteStore(path)
    old.open()
    old.write([ev("a", "error", 5), ev("a", "ERROR", 6), ev("a", "Tool:Start", 7)])
    old.write([ev("a", "text_chunk", 8), ev("a", "error", 9, severity="info")])
    old.close()
    monkeypatch.undo()

    new = SqliteStore(path)
    new.open()
    try:
        new.write([ev("a", "Error", 10), ev("a", "step_complete", 11), ev("a", "text_chunk", 12)])
        errors = EventFilter(event_types=("error",), start_ms=6, end_ms=11)
        assert new.count_events(errors) == 3
        assert [e.ts for e in new.events_before(errors, None, 10)] == [10, 9, 6]
        tools = EventFilter(event_types=("TOOL:START",))
        assert [e.event_type for e in new.events_after(tools, 0, 10)] == ["Tool:Start"]
        minor = EventFilter(event_types=("error",), severities=("INFO",))
        assert [e.ts for e in new.events_before(minor, None, 10)] == [9]
        where, args = SqliteStore._where(errors)
        with closing(apsw.Connection(str(path))) as conn:
            (indexed,) = conn.execute(
                f"SELECT count(*) FROM events INDEXED BY events_of_rare_types WHERE {backend._RARE}"
            ).fetchone()
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM events WHERE "
                    + " AND ".join([*where, "id > ? AND id < ?"]),
                    [*args, 0, 1 << 62],
                )
            )
        assert indexed == 6  # every error, step and tool event; no text
        assert "events_of_rare_types" in plan
    finally:
        new.close()


def test_a_read_begun_before_postings_adds_what_they_wrote(tmp_path: Path) -> None:
    """A sessions read whose snapshot began before a posting committed sees rows without
    those counts, and adds them from the previous pending state; one begun after, not."""
    store = SqliteStore(tmp_path / "r.db", posting_events=2)
    store.open()
    try:
        store.write([ops.UpsertAgent("a", 1), ops.UpsertSession("s", "a", 1)])
        store.write([ev("a", "x", 5, session="s"), ev("a", "x", 6, session="s")])
        mark_before = store._pending_sessions[0]
        assert store._session_overlay(mark_before) == {"s": (2, 6, 0)}
        store.write([ev("a", "x", 7, session="s")])  # posts the first two, counts this one
        mark_after = store._pending_sessions[0]
        assert mark_after > mark_before
        assert store._session_overlay(mark_before) == {"s": (3, 7, 0)}
        assert store._session_overlay(mark_after) == {"s": (1, 7, 0)}
        assert store._session_overlay(mark_after + 1) == {}  # posted, not yet let go of
        store.write([ev("a", "x", 8, session="s")])
        store.write([ev("a", "x", 9, session="s")])  # posts 7 and 8
        assert store._session_overlay(mark_before) is None  # two postings since: read again
        session = store.get_session("s")
        assert session is not None and (session.event_count, session.updated_at) == (5, 9)
    finally:
        store.close()


@pytest.mark.parametrize("older", [7, 8])
def test_a_migration_does_not_count_again_what_an_earlier_release_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, older: int
) -> None:
    """Schema 8 writes agents' counts with the postings, schema 9 sessions' counts: what a
    release before either counted in every commit is not counted again."""
    from aster_studio.store import sqlite as backend

    path = tmp_path / f"v{older}.db"
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:older])
    old = SqliteStore(path)
    old.open()
    old.write([ops.UpsertAgent("a", 1), ops.UpsertSession("s", "a", 1)])
    old.write([ev("a", "x", 5, session="s"), ev("a", "error", 6, session="s")])
    old.close()
    with closing(apsw.Connection(str(path))) as conn:  # as those releases counted: at once
        conn.execute("UPDATE sessions SET event_count = 2, updated_at = 6")
        if older < 8:
            conn.execute("UPDATE agents SET event_count = 2, error_count = 1, last_event_at = 6")
    monkeypatch.undo()

    new = SqliteStore(path)
    new.open()
    try:
        assert (_agent_counts(new), _session_counts(new)) == ({"a": (2, 1, 6)}, [("s", 2, 6)])
        new.write([ev("a", "x", 7, session="s")])
        assert (_agent_counts(new), _session_counts(new)) == ({"a": (3, 1, 7)}, [("s", 3, 7)])
    finally:
        new.close()


def test_a_deleted_agents_events_stay_counted_across_postings_reopening_and_its_return(
    database: Opener,
) -> None:
    """Deleting an agent deleted its row and the count in it, though its events stay stored:
    the agents' counts and `forgotten_events` together are every stored event, whether the
    deleted agent's events were counted in its row or still pending, across a posting round
    and reopening, and after the agent comes back."""

    def check(store: Store) -> None:
        counted = sum(a.event_count for a in store.load_agents())
        assert counted + store.forgotten_events() == store.count_events(EventFilter())

    store = database(posting_events=4)
    store.open()
    try:
        store.write([ops.UpsertAgent("a", 1), ops.UpsertAgent("b", 1)])
        store.write([*(ev("a") for _ in range(5)), ev("b")])
        store.write([ev("b")])  # a posting round: a's 5 in its row
        store.write([ev("a"), ev("a")])  # pending: not in a's row yet
        store.write([ops.DeleteAgent("a")])
        assert [a.id for a in store.load_agents()] == ["b"]
        check(store)
    finally:
        store.close()
    store = database(posting_events=4)
    store.open()
    try:
        check(store)  # a's pending events counted again from the events, without a row
        store.write([ev("b"), ev("b")])
        store.write([ev("b")])  # a posting round, a's pending events in it
        assert store.forgotten_events() == 5 + 2
        check(store)
        store.write([ops.UpsertAgent("a", 9, implicit=True), ev("a")])
        check(store)
        assert {a.id: a.event_count for a in store.load_agents()}["a"] == 1
    finally:
        store.close()


def test_schema_10_counts_the_events_of_agents_deleted_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_studio.store import sqlite as backend

    path = tmp_path / "v9.db"
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:9])
    old = SqliteStore(path, posting_events=2)
    old.open()
    old.write([ops.UpsertAgent("a", 1), ops.UpsertAgent("b", 1)])
    old.write([ev("a"), ev("a"), ev("b")])
    old.write([ev("b")])  # a posting round: a's two in its row
    old.write([ops.DeleteAgent("a")])
    old.close()
    monkeypatch.undo()

    new = SqliteStore(path)
    new.open()
    try:
        assert new.forgotten_events() == 2
        assert [(a.id, a.event_count) for a in new.load_agents()] == [("b", 2)]
    finally:
        new.close()


def test_implicit_agent_does_not_overwrite_registered_one(store: Store) -> None:
    store.write([ops.UpsertAgent("a", 1, name="Alpha")])
    store.write([ops.UpsertAgent("a", 2, implicit=True)])
    (agent,) = store.load_agents()
    assert agent.name == "Alpha" and not agent.implicit


def test_default_prices_are_seeded_and_editable(store: Store) -> None:
    models = {p.model for p in store.prices()}
    assert "gpt-4o" in models
    store.write([ops.DeletePrice("gpt-4o")])
    assert "gpt-4o" not in {p.model for p in store.prices()}


def test_failed_write_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any StoreError subclass
        # A value the driver refuses.
        store.write([ev(), ev()._replace(payload=cast(bytes, object()))])
    assert store.count_events(EventFilter()) == 0
    assert store.write([ev()]).events[0].id == 3


def test_a_write_the_database_refuses_is_undone_whole_prices_too(store: Store) -> None:
    (first,) = store.write([ev()]).events
    with pytest.raises(StoreError):
        store.write(
            [
                ops.UpsertAgent("z", 1),
                ops.SetPrice(Price("house", 2.0, 4.0), 1),
                ev(),
                first,  # its id is taken
            ]
        )
    assert store.load_agents() == []
    assert "house" not in {p.model for p in store.prices()}
    ((_, usage),) = store.write(usage_event("house", 5, (1_000_000, 0))).usage
    assert usage.cost is None  # the writer's own price table was undone with the rest
    assert store.count_events(EventFilter()) == 2


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA user_version=999")
    conn.close()
    with pytest.raises(MigrationError, match="newer than this release"):
        SqliteStore(path).open()


@pytest.mark.parametrize("count", [1, 3, 4, 37, 300])
def test_every_event_of_a_write_is_stored_in_order(store: Store, count: int) -> None:
    # Written in multi-row statements of several sizes and a remainder row by row.
    written = [ev(i=i) for i in range(count)]
    assert store.write(written).events == written
    assert store.events_after(EventFilter(), 0, 1000) == written


def test_schema_5_drops_autoincrement_keeping_events_and_every_id_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_studio.store import sqlite as backend

    path = tmp_path / "v4.db"
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:4])
    old = SqliteStore(path, posting_events=1_000_000)  # schema 4 has no postings
    old.open()
    written = [ev(session="s"), ev(session="s"), ev()]
    old.write(written)
    old.close()
    with closing(apsw.Connection(str(path))) as conn:  # the newest event deleted, its id used
        conn.execute("DELETE FROM events WHERE id = 3")
    monkeypatch.undo()

    new = SqliteStore(path)
    new.open()
    try:
        with closing(apsw.Connection(str(path))) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(backend.MIGRATIONS)
            (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
            assert "AUTOINCREMENT" not in sql
            # Found by id: by agent and session through postings, by time through theirs; the
            # only index is partial, of the few types read by type alone (schema 14).
            indexes = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            ).fetchall()
            assert indexes == [("events_of_rare_types",)]
        assert new.events_after(EventFilter(), 0, 10) == written[:2]
        assert new.count_events(EventFilter(session_ids=("s",))) == 2
        assert new.reserve_event_ids() == 4
    finally:
        new.close()


def test_a_deleted_newest_event_keeps_its_id_after_a_clean_stop(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    one = SqliteStore(path)
    one.open()
    one.reserve_event_ids()
    one.write([NUMBERS.event(), NUMBERS.event()])
    one.release_event_ids()
    one.close()
    with closing(apsw.Connection(str(path))) as conn:
        conn.execute("DELETE FROM events WHERE id = 2")
    two = SqliteStore(path)
    two.open()
    assert two.reserve_event_ids() == 3
    two.close()


def test_close_while_a_read_runs_leaves_that_connection_to_finish(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A stop while a REST read is running: apsw refuses to close a connection in use in another
    # thread; the store logs it and closes the rest, and the read still completes.
    store = SqliteStore(tmp_path / "c.db")
    store.open()
    store.write([ev(), ev()])
    reading, close_tried = threading.Event(), threading.Event()

    def mid_query() -> int:
        reading.set()
        close_tried.wait(10)
        return 1

    counted: list[int] = []

    def read() -> None:
        with store._read() as conn:
            conn.create_scalar_function("mid_query", mid_query)
            counted.append(_scalar(conn, "SELECT count(*) + mid_query() FROM events"))

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(10)
    try:
        store.close()
    finally:
        close_tried.set()
        reader.join(10)
    assert counted == [3]
    assert "still in use at close" in caplog.text
    with pytest.raises(StoreError):
        store.count_events(EventFilter())  # this thread's reader was closed


def test_small_commits_give_way_between_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit of a server that keeps up yields the core between its statements, to the
    event loop if it is waiting; the big commits of a saturated one do not."""
    from aster_studio.store.sqlite import GIVE_WAY_OPS

    yields: list[int] = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(1))
    store = SqliteStore(tmp_path / "y.db", posting_events=50)
    store.open()
    try:
        store.write([ev() for _ in range(50)])
        assert len(yields) == 2  # after the events, before the commit
        # The postings too: a yield after the events, the agents' and the sessions' counts, the
        # agents' postings (these events have no session) and the watermark, then the commit.
        store.write([ev() for _ in range(60)])
        assert len(yields) == 2 + 6
        yields.clear()
        store.write([ev() for _ in range(GIVE_WAY_OPS + 1)])
        assert yields == []
        assert store.count_events(EventFilter()) == 110 + GIVE_WAY_OPS + 1
    finally:
        store.close()


def test_a_posting_round_spread_over_commits_keeps_every_read_exact(tmp_path: Path) -> None:
    """A round with more rows than POSTING_ROWS lists its events over several commits, and
    the watermark moves with its last: reads by agent and by session, after every commit and
    after reopening in the middle of a round, find each event once, in order."""
    from aster_studio.store.sqlite import POSTING_ROWS

    path = tmp_path / "round.db"
    agents = [f"a{i:02d}" for i in range(40)]  # 40 agents' and 40 sessions' rows a round
    assert 2 * len(agents) > POSTING_ROWS
    by_key: dict[str, list[int]] = {}

    def check(store: SqliteStore) -> None:
        for key in ("a00", "a17", "a39", "s-a00", "s-a39"):
            flt = (
                EventFilter(session_ids=(key,))
                if key.startswith("s-")
                else EventFilter(agent_ids=(key,))
            )
            typed = EventFilter(
                agent_ids=flt.agent_ids, session_ids=flt.session_ids, event_types=("x",)
            )
            want = by_key.get(key, [])
            assert [e.id for e in store.events_after(flt, 0, 1_000)] == want
            assert [e.id for e in store.events_before(flt, None, 1_000)] == want[::-1]
            assert store.count_events(flt) == store.count_events(typed) == len(want)

    def write(store: SqliteStore, turn: int) -> None:
        events = [ev(a, "x", 100 + turn, session=f"s-{a}") for a in agents]
        store.write(list(events))
        for e in events:
            by_key.setdefault(e.agent_id, []).append(e.id)
            by_key.setdefault(f"s-{e.agent_id}", []).append(e.id)

    store = SqliteStore(path, posting_events=100)
    store.open()
    store.write([ops.UpsertAgent(a, 1) for a in agents])
    store.write([ops.UpsertSession(f"s-{a}", a, 1) for a in agents])
    under_way = 0
    for turn in range(12):
        write(store, turn)
        under_way += store._round is not None
        check(store)
    assert under_way >= 3  # rounds took more than one commit
    while store._round is None or len(store._round.agents + store._round.sessions) in (
        0,
        2 * len(agents),
    ):
        turn += 1
        write(store, turn)
    # Closed with some of a round's rows written, above the watermark: they are dropped at the
    # next open and the round's events posted again, with no row twice.
    watermark = _scalar(
        store._require_writer(), "SELECT value FROM meta WHERE name = 'posted_through'"
    )
    assert store._round.to > watermark
    store.close()
    reopened = SqliteStore(path, posting_events=100)
    reopened.open()
    try:
        check(reopened)
        last = turn + 8
        for later in range(turn + 1, last + 1):
            write(reopened, later)
            check(reopened)
        assert sorted(_agent_counts(reopened).items())[0] == (
            "a00",
            (len(by_key["a00"]), 0, 100 + last),
        )
    finally:
        reopened.close()


def test_one_writer_per_database_and_the_command_line_beside_it(tmp_path: Path) -> None:
    """A second writer on an open database is refused, naming the holder; the command line's
    administrative open beside it leaves the writer's posting round whole, so reads by agent
    still find every event; the lock goes with `close`."""
    path = tmp_path / "one.db"
    agents = [f"a{i:02d}" for i in range(40)]
    studio = SqliteStore(path, posting_events=100)
    studio.open()
    studio.write([ops.UpsertAgent(a, 1) for a in agents])
    studio.write([ops.UpsertSession(f"s-{a}", a, 1) for a in agents])
    with pytest.raises(
        DatabaseInUse, match=f"in use by another Aster Studio \\(pid {os.getpid()}\\)"
    ):
        SqliteStore(path).open()
    written: list[int] = []
    turn = 0

    def write() -> None:
        nonlocal turn
        events = [ev(a, "x", 100 + turn, session=f"s-{a}") for a in agents]
        studio.write(list(events))
        written.extend(e.id for e in events if e.agent_id == "a39")
        turn += 1

    # Until a round is under way, some of its rows written above the watermark.
    while studio._round is None or len(studio._round.agents + studio._round.sessions) in (0, 80):
        write()
    beside = SqliteStore(path)
    beside.open_beside_studio()
    beside.add_key(AgentKey("k1", "ci", "*", "hash", 5))
    assert [k.id for k in beside.agent_keys()] == ["k1"]
    beside.close()
    for _ in range(10):
        write()
    flt = EventFilter(agent_ids=("a39",))
    assert [e.id for e in studio.events_after(flt, 0, 1_000)] == written
    assert studio.count_events(flt) == len(written)
    studio.close()
    again = SqliteStore(path)
    again.open()  # the lock went with close
    again.close()


def test_the_command_line_beside_a_studio_of_another_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(apsw.Connection(str(path))) as conn:
        conn.execute("PRAGMA user_version=3")
    with pytest.raises(StoreError, match="another release \\(schema version 3"):
        SqliteStore(path).open_beside_studio()


def test_the_free_check_passes_a_first_start_before_the_data_folder_exists(
    tmp_path: Path,
) -> None:
    """`serve` checks the lock before it listens, on a first start before the folder exists."""
    path = tmp_path / "not" / "yet" / "studio.db"
    store = SqliteStore(path)
    store.check_startable()
    store.open()
    try:
        with pytest.raises(DatabaseInUse):
            SqliteStore(path).check_startable()
    finally:
        store.close()
    SqliteStore(path).check_startable()


# ---- more of the contract, on every backend ----


def test_text_search_matches_the_json_text_and_folds_ascii_case_only(store: Store) -> None:
    store.write([ev(msg='She said "Hi"\nthen left'), ev(msg="héllo"), ev(msg="back\\slash")])
    assert store.count_events(EventFilter(text='said "hi"\nTHEN')) == 1
    assert store.count_events(EventFilter(text="HéLLO")) == 1
    assert store.count_events(EventFilter(text="HÉLLO")) == 0  # é and É are two letters
    assert store.count_events(EventFilter(text="back\\slash")) == 1
    store.write([ev(msg="ÉCOLE")])
    assert store.count_events(EventFilter(text="école")) == 0
    assert store.count_events(EventFilter(text="Écol")) == 1


def test_type_and_severity_filters_match_whatever_the_case(store: Store) -> None:
    store.write([ev("a", "Error", severity="FATAL"), ev("a", "error"), ev("a", "x")])
    assert store.count_events(EventFilter(event_types=("ERROR",))) == 2
    assert store.count_events(EventFilter(severities=("fatal",))) == 1
    flt = EventFilter(event_types=("error",), agent_ids=("a",), channels=("progress",))
    assert [e.id for e in store.events_before(flt, None, 10)] == [2, 1]
    assert store.count_events(EventFilter(channels=("other",))) == 0


def test_sessions_active_and_suspended_follow_the_connected_agents(store: Store) -> None:
    store.write([ops.UpsertAgent(a, 1) for a in "abc"])
    store.write(
        [
            ops.UpsertSession("sa", "a", 10),
            ops.UpsertSession("sb", "b", 11),
            ops.UpsertSession("sc", "c", 12, status="suspended"),
            ops.UpsertSession("done", "a", 13),
        ]
    )
    store.write([ops.EndSession("done", "completed", 14)])

    def ids(status: str, connected: list[str] | None) -> tuple[list[str], int]:
        page, total = store.list_sessions(
            status=status, agent_id=None, limit=10, offset=0, connected=connected
        )
        return [r.id for r in page], total

    assert ids("active", ["a"]) == (["sa"], 1)
    assert ids("suspended", ["a"]) == (["sc", "sb"], 2)
    assert ids("active", None) == (["sb", "sa"], 2)
    assert ids("active", []) == ([], 0)
    assert store.active_sessions_by_agent() == {"a": 1, "b": 1}


def test_a_session_op_changes_only_the_sessions_of_its_owners(store: Store) -> None:
    store.write([ops.UpsertAgent(a, 1) for a in "ab"] + [ops.UpsertSession("s", "a", 1)])
    store.write(
        [
            ops.UpsertSession("s", "b", 2, metadata={"taken": True}, owners=("b",)),
            ops.EndSession("s", "failed", 3, owners=("b",)),
        ]
    )
    session = store.get_session("s")
    assert session is not None
    assert (session.agent_id, session.status, session.metadata) == ("a", "active", {})
    store.write([ops.EndSession("s", "completed", 4, owners=("a",))])
    ended = store.get_session("s")
    assert ended is not None and (ended.status, ended.ended_at, ended.updated_at) == (
        "completed",
        4,
        4,
    )


def test_requests_audit_and_unobserved_events(store: Store) -> None:
    from aster_studio.models import RequestRecord

    asked = ev("a", "permission_request")
    store.write([asked, ev("a", "x"), ops.MarkObserved(0)])
    assert store.unobserved_events({"permission_request"}) == [asked]
    pending = RequestRecord("r1", "permission", "a", None, "c1", "pending", 5, None, {"q": 1})
    decided = RequestRecord("r2", "question", "a", "s", "c2", "decided", 6, 9, {"q": 2}, {"ok": 1})
    store.write(
        [
            ops.SaveRequest(pending),
            ops.SaveRequest(decided),
            ops.MarkObserved(asked.id),
            ops.AddAudit(7, "console", "decide", "r2", "a", {"why": "ok"}),
            ops.AddAudit(8, "console", "expire", None, "b"),
        ]
    )
    assert store.unobserved_events({"permission_request"}) == []
    assert store.get_request("r2") == decided
    assert store.open_requests() == [pending, decided]
    assert store.list_requests(status=None, agent_id="a", kind=None, limit=10) == [decided, pending]
    store.write([ops.SaveRequest(dataclasses.replace(decided, acknowledged_at=10))])
    assert [r.id for r in store.open_requests()] == ["r1"]
    entries = store.audit(agent_id=None, request_id=None, limit=10)
    assert [(e.action, e.detail) for e in entries] == [("expire", {}), ("decide", {"why": "ok"})]
    assert [e.action for e in store.audit(agent_id=None, request_id="r2", limit=10)] == ["decide"]


def test_events_of_an_agent_without_a_row_are_forgotten_events(store: Store) -> None:
    store.write([ops.UpsertAgent("a", 1), ev("nobody"), ev("a")])
    store.write([ev("a"), ops.DeleteAgent("a")])  # deleted in the commit of its event
    assert store.load_agents() == []
    assert store.forgotten_events() == 3 == store.count_events(EventFilter())


def test_keys_and_secrets(store: Store) -> None:
    store.add_key(AgentKey("k1", "ci", "*", "h1", 5))
    store.add_key(AgentKey("k2", "bot", "bot-*", "h2", 6))
    assert store.revoke_key("k1", 9) is True
    assert store.revoke_key("k1", 10) is False  # revoked already
    assert [(k.id, k.revoked_at) for k in store.agent_keys()] == [("k1", 9), ("k2", None)]
    assert store.get_secret("console") is None
    store.set_secret("console", "one", 1)
    store.set_secret("console", "two", 2)
    assert store.get_secret("console") == "two"
    assert store.add_secret("request_ids", "first", 3) == "first"
    assert store.add_secret("request_ids", "second", 4) == "first"  # the one stored stays
    assert store.add_secret("console", "three", 5) == "two"


def test_console_sessions_are_read_until_they_expire_or_end(store: Store) -> None:
    one = ConsoleSession("hash1", "csrf1", "cred", 1_100)
    two = ConsoleSession("hash2", "csrf2", "cred", 1_200)
    store.add_console_session(one, 1_000)
    store.add_console_session(two, 1_000)
    assert store.get_console_session("hash1", 1_000) == one
    assert store.get_console_session("hash1", 1_100) is None  # expired
    assert store.get_console_session("other", 1_000) is None
    assert set(store.console_sessions(1_000)) == {one, two}
    assert store.console_sessions(1_100) == [two]
    store.delete_console_session("hash2")
    store.delete_console_session("hash2")  # a second logout of it is no error
    assert store.get_console_session("hash2", 1_000) is None
    assert store.console_sessions(1_000) == [one]


def test_a_new_console_session_drops_the_expired_ones(store: Store) -> None:
    """Nothing else deletes them: sessions abandoned without a logout would pile up."""
    store.add_console_session(ConsoleSession("old", "c", "cred", 1_100), 1_000)
    new = ConsoleSession("new", "c", "cred", 5_000)
    store.add_console_session(new, 1_100)
    assert store.console_sessions(0) == [new]  # read as of before: the old one is gone


def test_a_database_of_the_previous_schema_gets_console_sessions(
    database: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = database()
    backend = sys.modules[type(old).__module__]
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:-1])
    old.open()
    old.set_secret("console", "kept", 1)
    old.close()
    monkeypatch.undo()

    new = database()
    new.open()
    try:
        session = ConsoleSession("hash", "csrf", "cred", 2_000)
        new.add_console_session(session, 1_000)
        assert new.get_console_session("hash", 1_000) == session
        assert new.get_secret("console") == "kept"
    finally:
        new.close()


def test_postgres_shared_studios_starting_at_once_agree_on_one_secret(
    pg_schema: tuple[str, str],
) -> None:
    """Two Studios of a cluster making the request-id key at the same moment: one failed
    ("could not serialize access"), or each kept its own and their request ids differed."""
    with shared_stores(pg_schema) as (one, two):
        start = threading.Barrier(2)
        got: dict[str, str] = {}

        def add(store: Store, value: str) -> None:
            start.wait(5)
            for n in range(20):
                got[f"{value}{n}"] = store.add_secret(f"key{n}", value, n)

        threads = [threading.Thread(target=add, args=a) for a in ((one, "a"), (two, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got) == 40  # neither failed
        assert all(got[f"a{n}"] == got[f"b{n}"] for n in range(20))


def test_usage_of_sessions_and_without_a_model(store: Store) -> None:
    event = ev("a", "token_usage", 10, session="s")
    store.write([event, ops.RecordUsage(event.id, "a", "s", 10, Usage(None, 5, 1))])
    store.write(usage_event("gpt-4o", 20, (1_000_000, 0)))
    totals = store.session_usage(["s", "none"])
    assert list(totals) == ["s"] and (totals["s"].input, totals["s"].unpriced_tokens) == (5, 6)
    (unnamed,) = store.usage_rows(UsageQuery(0, 100, model=""))
    assert (unnamed.key, unnamed.input) == (None, 5)
    by_model = store.usage_rows(UsageQuery(0, 100, group_by="model"))
    assert [(r.key, r.cost) for r in by_model] == [(None, 0.0), ("gpt-4o", 2.5)]
    assert store.event_counts_by_type(0, 15) == {"token_usage": 1}


# ---- PostgreSQL's own ----


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(dsn, schema) of a fresh schema on the test server."""
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        yield dsn, schema


def test_postgres_reopened_keeps_everything_and_continues_ids(
    pg_schema: tuple[str, str],
) -> None:
    from aster_studio.store.postgres import ID_BLOCK as PG_ID_BLOCK
    from aster_studio.store.postgres import PostgresStore

    assert PG_ID_BLOCK == ID_BLOCK
    dsn, schema = pg_schema
    one = PostgresStore(dsn, schema=schema)
    one.open()
    assert one.reserve_event_ids() == 1
    written = [ev("a", "x", 5, session="s"), ev("a", "error", 6, session="s")]
    one.write([ops.UpsertAgent("a", 1, name="Alpha"), ops.UpsertSession("s", "a", 1), *written])
    one.write([*usage_event("gpt-4o", 7, (10, 1)), ops.MarkProducer("p", 4)])
    one.add_key(AgentKey("k1", "ci", "*", "hash", 5))
    one.set_secret("console", "h", 5)
    store_id = one.store_id
    one.release_event_ids()
    one.close()
    two = PostgresStore(dsn, schema=schema)
    two.open()
    try:
        assert two.store_id == store_id
        assert two.events_after(EventFilter(), 0, 10)[:2] == written
        (agent,) = two.load_agents()
        assert (agent.name, agent.event_count, agent.error_count) == ("Alpha", 3, 1)
        assert two.get_session("s") is not None
        assert two.usage_by_agent()["a"].requests == 1
        assert two.producer_seq("p") == 4
        assert [k.id for k in two.agent_keys()] == ["k1"]
        assert two.get_secret("console") == "h"
        assert two.reserve_event_ids() == 4
    finally:
        two.close()


def test_postgres_a_second_store_on_the_schema_is_refused_until_the_first_closes(
    pg_schema: tuple[str, str],
) -> None:
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    studio = PostgresStore(dsn, schema=schema)
    studio.check_startable()  # a first start: nothing there yet
    studio.open()
    try:
        second = PostgresStore(dsn, schema=schema)
        with pytest.raises(
            DatabaseInUse, match=f"in use by another Aster Studio \\(pid {os.getpid()}"
        ):
            second.open()
        second.close()
        with pytest.raises(DatabaseInUse, match=f"\\(schema {schema}\\)"):
            PostgresStore(dsn, schema=schema).check_startable()
        with fresh_schema(dsn) as other:  # another schema of the same database: a store of its own
            elsewhere = PostgresStore(dsn, schema=other)
            elsewhere.open()
            elsewhere.close()
    finally:
        studio.close()
    studio.close()  # idempotent
    PostgresStore(dsn, schema=schema).check_startable()  # the lock went with close
    again = PostgresStore(dsn, schema=schema)
    again.open()
    again.close()


def test_postgres_the_command_line_beside_a_studio_writes_keys_only(
    pg_schema: tuple[str, str],
) -> None:
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    studio = PostgresStore(dsn, schema=schema)
    studio.open()
    try:
        beside = PostgresStore(dsn, schema=schema)
        beside.open_beside_studio()
        try:
            beside.add_key(AgentKey("k1", "ci", "*", "hash", 5))
            with pytest.raises(StoreError, match="not open"):
                beside.write([ev()])
        finally:
            beside.close()
        assert [k.id for k in studio.agent_keys()] == ["k1"]
    finally:
        studio.close()


def test_postgres_newer_schema_is_refused(pg_schema: tuple[str, str]) -> None:
    import psycopg
    from psycopg import sql

    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema)
    store.open()
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.meta SET value = 999 WHERE name = 'schema_version'").format(
                sql.Identifier(schema)
            )
        )
    with pytest.raises(MigrationError, match="newer than this release"):
        PostgresStore(dsn, schema=schema).check_startable()
    with pytest.raises(MigrationError, match="newer than this release"):
        PostgresStore(dsn, schema=schema).open()
    with pytest.raises(StoreError, match="another release \\(schema version 999"):
        PostgresStore(dsn, schema=schema).open_beside_studio()


def test_postgres_describe_names_the_database_never_the_password() -> None:
    from aster_studio.store.postgres import PostgresStore

    store = PostgresStore("postgresql://studio:s3cret@db.example:6543/events", schema="prod")
    assert store.describe() == "postgresql://studio@db.example:6543/events (schema prod)"
    keywords = PostgresStore("host=db user=u password=s3cret dbname=d")
    assert keywords.describe() == "postgresql://u@db:5432/d (schema public)"


# ---- PostgreSQL: a lost connection (the server restarted, a failover) ----


def terminate(dsn: str, application_name: str) -> int:
    """End this process's store connections named `application_name` (as a restarted server
    would), waiting for them to go; how many there were."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database() "
            "AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    assert all(ended for (ended,) in rows)
    return len(rows)


def writer_name() -> str:
    return f"aster-studio pid {os.getpid()}"


@pytest.fixture
def pg_store(pg_schema: tuple[str, str]) -> Iterator[Store]:
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema)
    store.open()
    try:
        yield store
    finally:
        store.close()


def test_postgres_a_lost_writer_fails_one_write_then_reconnects_with_its_lock(
    pg_schema: tuple[str, str], pg_store: Store
) -> None:
    from aster_studio.errors import StoreUnavailable
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    first = pg_store.reserve_event_ids()
    numbers = Numberer(first)
    pg_store.write([numbers.event(), numbers.event()])
    assert terminate(dsn, writer_name()) == 1
    held = numbers.event()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        pg_store.write([held])
    pg_store.write([held])  # the same write again: it connects anew
    pg_store.write([numbers.event()])
    ids = [e.id for e in pg_store.events_after(EventFilter(), 0, 10)]
    assert ids == [first, first + 1, first + 2, first + 3]
    with pytest.raises(DatabaseInUse):  # the lock was taken again with the new session
        PostgresStore(dsn, schema=schema).open()


def test_postgres_a_reconnected_writer_does_not_write_while_another_holds_the_lock(
    pg_schema: tuple[str, str], pg_store: Store
) -> None:
    from aster_studio.errors import StoreUnavailable
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    pg_store.write([ev()])
    terminate(dsn, writer_name())
    with pytest.raises(StoreUnavailable):
        pg_store.write([ev()])
    other = PostgresStore(dsn, schema=schema)
    other.open()  # a second Studio took the schema meanwhile
    try:
        with pytest.raises(
            StoreUnavailable,
            match=f"another Aster Studio \\(pid {os.getpid()}[,)].* holds the schema",
        ):
            pg_store.write([ev()])
        assert other.count_events(EventFilter()) == 1
    finally:
        other.close()
    pg_store.write([ev()])
    assert pg_store.count_events(EventFilter()) == 2


def test_postgres_a_write_lost_with_its_connection_leaves_the_prices_as_stored(
    pg_schema: tuple[str, str], pg_store: Store
) -> None:
    from aster_studio.errors import StoreUnavailable

    dsn, _ = pg_schema
    pg_store.write([ev()])
    terminate(dsn, writer_name())
    price = ops.SetPrice(Price("model-x", 1_000_000.0, 0.0), 5)
    with pytest.raises(StoreUnavailable):
        pg_store.write([price, *usage_event("model-x", 10, (1, 0))])
    # The price was not stored: the usage of the next write is not priced by it.
    pg_store.write(usage_event("model-x", 20, (1, 0)))
    assert [p.model for p in pg_store.prices() if p.model == "model-x"] == []
    (row,) = pg_store.usage_rows(UsageQuery(0, 100, group_by="model"))
    assert (row.key, row.cost, row.unpriced_tokens) == ("model-x", 0.0, 1)


def test_postgres_a_read_on_a_cut_off_pooled_connection_is_retried_on_a_new_one(
    pg_schema: tuple[str, str], pg_store: Store
) -> None:
    dsn, _ = pg_schema
    pg_store.write([ev(), ev()])
    assert pg_store.count_events(EventFilter()) == 2  # a reader connection, pooled now
    assert terminate(dsn, f"{writer_name()} reader") >= 1
    assert pg_store.count_events(EventFilter()) == 2
    pg_store.ping()


def test_postgres_ping_reports_a_lost_writer_until_it_is_back(
    pg_schema: tuple[str, str], pg_store: Store
) -> None:
    from aster_studio.errors import StoreUnavailable

    dsn, _ = pg_schema
    pg_store.write([ev()])
    terminate(dsn, writer_name())
    with pytest.raises(StoreUnavailable):
        pg_store.write([ev()])
    with pytest.raises(StoreUnavailable, match="writer lost its connection"):
        pg_store.ping()
    pg_store.write([ev()])
    pg_store.ping()


def test_postgres_a_write_whose_commit_reply_was_lost_is_not_written_twice(
    pg_schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The server committed and the connection was cut before its reply: the write is in
    doubt. Written again, its events would break their ids' uniqueness (a refused write,
    dropped op by op): instead the store finds them stored and reports the write done."""
    from aster_studio.errors import StoreUnavailable
    from aster_studio.store.postgres import PostgresStore
    from tests.support.pg_proxy import CommitCutter

    dsn, schema = pg_schema
    with CommitCutter() as proxy:
        store = PostgresStore(proxy.dsn(dsn), schema=schema)
        store.open()
        try:
            first = store.reserve_event_ids()
            numbers = Numberer(first)
            store.write([numbers.event()])
            proxy.arm()
            held: list[ops.WriteOp] = [numbers.event(), numbers.event(), ops.MarkProducer("p", 7)]
            with pytest.raises(StoreUnavailable):
                store.write(held)
            assert proxy.cuts == 1
            again = store.write(held)  # as the pipeline retries it
            assert [e.id for e in again.events] == [first + 1, first + 2]
            assert again.producers == {"p": 7}  # its acks go out
            store.write([numbers.event()])
            ids = [e.id for e in store.events_after(EventFilter(), 0, 10)]
            assert ids == [first, first + 1, first + 2, first + 3]
            assert store.producer_seq("p") == 7
            assert "had committed: not written again" in caplog.text
        finally:
            store.close()


# ---- PostgreSQL shared by the Studios of a cluster ----


def shared_store(pg_schema: tuple[str, str], dsn: str | None = None) -> Store:
    from aster_studio.store.postgres import PostgresStore

    store = PostgresStore(dsn or pg_schema[0], schema=pg_schema[1], shared=True)
    store.open()
    return store


@contextmanager
def shared_stores(pg_schema: tuple[str, str]) -> Iterator[tuple[Store, Store]]:
    """Two Studios of a cluster on the schema, closed after."""
    one = shared_store(pg_schema)
    try:
        two = shared_store(pg_schema)
        try:
            yield one, two
        finally:
            two.close()
    finally:
        one.close()


def test_postgres_shared_stores_number_events_in_the_order_of_their_commits(
    pg_schema: tuple[str, str],
) -> None:
    """Each Studio of a cluster numbers its events on its own loop; the ids stored are the
    commits': one sequence without holes, ascending in commit order across the Studios."""
    with shared_stores(pg_schema) as (one, two):
        assert one.reserve_event_ids() == two.reserve_event_ids() == 1  # provisional only
        committed: list[list[int]] = []
        lock = threading.Lock()

        def write(store: Store, agent: str) -> None:
            numbers = Numberer(1)
            for n in range(40):
                ops_: list[ops.WriteOp] = [numbers.event(agent) for _ in range(1 + n % 7)]
                if n % 5 == 0:
                    event = cast(StoredEvent, ops_[-1])
                    ops_.append(ops.RecordUsage(event.id, agent, None, 5, Usage("m", 1, 1)))
                result = store.write(ops_)
                with lock:  # the commit order, as far as the threads can tell
                    committed.append([e.id for e in result.events])

        threads = [
            threading.Thread(target=write, args=(store, agent))
            for store, agent in ((one, "a"), (two, "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        ids = [i for run in committed for i in run]
        assert sorted(ids) == list(range(1, len(ids) + 1))
        for run in committed:
            assert run == list(range(run[0], run[0] + len(run)))
        stored = one.events_after(EventFilter(), 0, 10_000)
        assert [e.id for e in stored] == sorted(ids)
        # Usage rows point at their events' stored ids.
        usage = one.usage_rows(UsageQuery(0, 10, group_by="agent"))
        assert {row.key: row.requests for row in usage} == {"a": 8, "b": 8}


def test_postgres_shared_and_lone_studios_exclude_each_other(pg_schema: tuple[str, str]) -> None:
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    member = shared_store(pg_schema)
    try:
        with pytest.raises(DatabaseInUse, match="run each Studio on it with --cluster"):
            PostgresStore(dsn, schema=schema).open()
    finally:
        member.close()
    alone = PostgresStore(dsn, schema=schema)
    alone.open()
    try:
        with pytest.raises(DatabaseInUse, match="an Aster Studio outside the cluster"):
            shared_store(pg_schema)
    finally:
        alone.close()


def test_postgres_shared_ids_continue_past_a_lone_studios_reservation(
    pg_schema: tuple[str, str],
) -> None:
    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    alone = PostgresStore(dsn, schema=schema)
    alone.open()
    first = alone.reserve_event_ids()
    alone.write([Numberer(first).event()])
    alone.close()  # crashed: no release, its reservation stands
    member = shared_store(pg_schema)
    try:
        (event,) = member.write([Numberer(1).event()]).events
        assert event.id == first + ID_BLOCK + 1
    finally:
        member.close()
    again = PostgresStore(dsn, schema=schema)
    again.open()
    try:
        assert again.reserve_event_ids() > event.id
    finally:
        again.close()


def test_postgres_a_shared_write_whose_commit_reply_was_lost_is_asked_about_not_redone(
    pg_schema: tuple[str, str],
) -> None:
    from aster_studio.errors import StoreUnavailable
    from tests.support.pg_proxy import CommitCutter

    with CommitCutter() as proxy:
        store = shared_store(pg_schema, proxy.dsn(pg_schema[0]))
        try:
            numbers = Numberer(1)
            store.write([numbers.event()])
            proxy.arm()
            held: list[ops.WriteOp] = [numbers.event(), numbers.event(), ops.MarkProducer("p", 3)]
            with pytest.raises(StoreUnavailable):
                store.write(held)
            again = store.write(held)  # its transaction committed: its result, not a new write
            assert [e.id for e in again.events] == [2, 3]
            assert again.producers == {"p": 3}
            assert [e.id for e in store.events_after(EventFilter(), 0, 10)] == [1, 2, 3]
        finally:
            store.close()


def test_postgres_shared_prices_changed_by_another_studio_price_the_next_usage(
    pg_schema: tuple[str, str],
) -> None:
    with shared_stores(pg_schema) as (one, two):
        numbers = Numberer(1)
        event = numbers.event()
        two.write([event, ops.RecordUsage(event.id, "a", None, 5, Usage("model-x", 10, 0))])
        one.write([ops.SetPrice(Price("model-x", 1_000_000.0, 0.0), 6)])
        event = numbers.event()
        two.write([event, ops.RecordUsage(event.id, "a", None, 7, Usage("model-x", 10, 0))])
        rows = two.usage_rows(UsageQuery(0, 100, group_by="model"))
        (row,) = rows
        assert (row.unpriced_tokens, row.cost) == (10, 10.0)


def test_postgres_shared_messages_stored_by_another_studio_are_not_stored_again(
    pg_schema: tuple[str, str],
) -> None:
    """A producer that moved from Studio 1 (cut off from Redis, not waited for) to Studio 2
    resent what Studio 1 had not committed yet, and both stored it."""
    with shared_stores(pg_schema) as (one, two):

        def unit(numbers: Numberer, seq: int, count: int) -> list[ops.WriteOp]:
            """The writes of message `seq` of producer "p": `count` events and a usage."""
            events = [numbers.event("a", payload={"seq": seq, "n": n}) for n in range(count)]
            usage = ops.RecordUsage(events[-1].id, "a", None, 5, Usage("m", seq, 0))
            writes: list[ops.WriteOp] = [*events, usage]
            return [*writes, ops.MarkProducer("p", seq, len(writes))]

        first, second = Numberer(1), Numberer(1)
        one.write(unit(first, 1, 2) + unit(first, 2, 3))  # Studio 1 stores messages 1 and 2
        # Studio 2 read the mark (0) before, and took 1 to 3 again, with other writes between.
        between = second.event("b")
        result = two.write([*unit(second, 1, 2), between, *unit(second, 2, 3), *unit(second, 3, 1)])
        assert [(e.agent_id, orjson.loads(e.payload).get("seq")) for e in result.events] == [
            ("b", None),
            ("a", 3),
        ]
        assert result.producers == {"p": 3}  # all durable: acknowledged
        assert [u.input for _, u in result.usage] == [3]
        stored = one.events_after(EventFilter(), 0, 100)
        assert [e.id for e in stored] == list(range(1, 8))  # no hole where the copies were
        assert [orjson.loads(e.payload).get("seq") for e in stored] == [1, 1, 2, 2, 2, None, 3]
        assert one.usage_rows(UsageQuery(0, 10))[0].input == 1 + 2 + 3
        assert two.producer_seq("p") == 3


def test_postgres_shared_studios_committing_the_same_messages_at_once_store_each_once(
    pg_schema: tuple[str, str],
) -> None:
    with shared_stores(pg_schema) as (one, two):

        def write(store: Store, step: int) -> None:
            numbers = Numberer(1)
            for start in range(1, 61, step):  # the same 60 messages, `step` to a commit
                writes: list[ops.WriteOp] = []
                for seq in range(start, min(start + step, 61)):
                    unit = [numbers.event("a", payload={"seq": seq, "n": n}) for n in range(2)]
                    writes += [*unit, ops.MarkProducer("p", seq, len(unit))]
                store.write(writes)

        threads = [threading.Thread(target=write, args=args) for args in ((one, 3), (two, 5))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stored = one.events_after(EventFilter(), 0, 1_000)
        seqs = sorted(orjson.loads(e.payload)["seq"] for e in stored)
        assert seqs == sorted(list(range(1, 61)) * 2)  # each message's two events, once
        assert [e.id for e in stored] == list(range(1, 121))


def test_postgres_an_unreachable_server_is_unavailable() -> None:
    from aster_studio.errors import StoreUnavailable
    from aster_studio.store.postgres import PostgresStore

    # A port nothing listens on: refused at once.
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", schema="x").open()


def test_nul_characters_in_ids_types_and_names_are_stored(store: Store) -> None:
    """PostgreSQL's text cannot hold NUL: one in an event's type failed every commit holding
    it, and a reliable agent resent it for ever. Every backend stores such an event and finds
    it again by the same values."""
    agent, session, etype = "bad\x00agent", "s\x00", "bad\x00type"
    event = NUMBERS.event(agent, etype, 10, session=session, severity="err\x00or", channel="c\x00")
    result = store.write(
        [
            ops.UpsertAgent(agent, 5, name="N\x00ame", model="m\x00"),
            ops.UpsertSession(session, agent, 5),
            event,
            ops.RecordUsage(event.id, agent, session, 10, Usage("m\x00", 7, 3)),
        ]
    )
    assert [e.id for e in result.events] == [event.id]
    found = EventFilter(agent_ids=(agent,), session_ids=(session,), event_types=(etype,))
    assert store.count_events(found) == 1
    assert [e.id for e in store.events_before(found, None, 10)] == [event.id]
    (row,) = [a for a in store.load_agents() if a.event_count == 1]
    assert row.name is not None and row.name.startswith("N") and row.name.endswith("ame")
    assert sum(u.input for u in store.usage_by_agent().values()) == 7


# ---- reads by time, text and key: every edge, checked against the events themselves ----


def _matches(e: StoredEvent, flt: EventFilter) -> bool:
    """Whether `e` meets `flt` (ASCII text only), read straight off the event."""
    return (
        (not flt.agent_ids or e.agent_id in flt.agent_ids)
        and (not flt.session_ids or e.session_id in flt.session_ids)
        and (not flt.event_types or e.event_type.lower() in [t.lower() for t in flt.event_types])
        and (flt.start_ms is None or e.ts >= flt.start_ms)
        and (flt.end_ms is None or e.ts < flt.end_ms)
        and (not flt.text or flt.text.lower() in bytes(e.payload).decode().lower())
    )


def _expected(
    events: list[StoredEvent],
    flt: EventFilter,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[int]:
    ids = [
        e.id
        for e in events
        if _matches(e, flt)
        and (after is None or e.id > after)
        and (before is None or e.id < before)
    ]
    ids.sort(reverse=newest_first)
    return ids[:limit]


def _check_reads(store: Store, events: list[StoredEvent], flt: EventFilter) -> None:
    """Newest and oldest first, from cursors in the middle and at the edges, at several limits,
    and the counts: each as the events themselves say."""
    middle = events[len(events) // 2].id
    for limit in (0, 1, 7, 100, 10_000):
        for before in (None, middle, events[0].id, events[-1].id + 1):
            got = [e.id for e in store.events_before(flt, before, limit)]
            assert got == _expected(events, flt, before=before, limit=limit), (flt, before, limit)
        for after in (0, middle, events[-1].id, events[0].id - 1):
            got = [e.id for e in store.events_after(flt, after, limit)]
            want = _expected(events, flt, after=after, limit=limit, newest_first=False)
            assert got == want, (flt, after, limit)
    assert store.count_events(flt) == len(_expected(events, flt, limit=len(events))), flt


def _stepping_clock_events(count: int) -> list[StoredEvent]:
    """`count` events of four agents, each in two sessions, a tenth of a second apart, except
    that the clock steps back by 1,500 ids' worth twice (ts is not monotonic in id)."""
    events = []
    for n in range(count):
        ts = 1_000_000 + 100 * n
        if 1_200 <= n < 1_400 or 4_100 <= n < 4_150:
            ts -= 150_000
        agent = f"a{n % 4}"
        events.append(
            ev(
                agent,
                ("x", "tool_call", "error")[n % 3],
                ts,
                session=f"{agent}-s{n % 8 // 4}",
                text=f"step {n}" + (" rare" if n % 1_000 == 999 else ""),
            )
        )
    return events


def test_reads_by_time_are_exact_with_a_clock_that_steps_back(database: Opener) -> None:
    # Posting rounds of 500 events on SQLite, blocks of 2,048 ids on PostgreSQL: the ranges
    # cross several of either, and the steps back lie inside and across them. Writes of 700
    # events cross the blocks' edges, one (ids 1,401 to 2,100) where no step back hides it.
    store = database(posting_events=500)
    store.open()
    try:
        events = _stepping_clock_events(5_000)
        for i in range(0, len(events), 700):
            store.write(list(events[i : i + 700]))
        first, last = events[0].ts, events[-1].ts
        stepped = events[1_200].ts
        for start, end in [
            (first, last + 1),  # the first to the last event, its edges exactly
            (first, last),  # the newest left out: the end is exclusive
            (first + 1, None),  # the oldest left out
            (None, first + 1),  # the oldest alone
            (stepped, stepped + 1),  # one instant, held by two events far apart in id
            (stepped - 5_000, stepped + 20_000),  # across the step, stepped events in it
            (events[2_048].ts, events[2_049].ts),  # one event at a block's first id
            (events[2_047].ts + 1, events[2_048].ts + 1),  # the event before it is out
            (events[4_120].ts, events[4_300].ts),  # the second step back
            (first - 10_000, first),  # before the first event: stepped-back ones
            (last + 1, last + 10_000),  # after every event
            (last + 1, first),  # an empty range
        ]:
            _check_reads(store, events, EventFilter(start_ms=start, end_ms=end))
        window = EventFilter(start_ms=events[1_000].ts, end_ms=events[4_500].ts)
        for flt in [
            dataclasses.replace(window, text="rare"),  # rare matches
            dataclasses.replace(window, text="no such text"),  # q matching nothing
            dataclasses.replace(window, text="STEP 4"),  # many, whatever the case
            dataclasses.replace(window, event_types=("error",)),
            EventFilter(text="no such text"),
            EventFilter(text="rare"),
            EventFilter(text="step"),
        ]:
            _check_reads(store, events, flt)
        by_type: dict[str, int] = {}
        for e in events:
            if window.start_ms <= e.ts < window.end_ms:  # type: ignore[operator]
                by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
        assert store.event_counts_by_type(window.start_ms or 0, window.end_ms or 0) == by_type
        assert store.event_counts_by_type(last + 1, last + 10) == {}
    finally:
        store.close()


def test_reads_by_agent_and_session_are_exact_and_ordered(database: Opener) -> None:
    store = database(posting_events=500)
    store.open()
    try:
        events = _stepping_clock_events(3_000)
        for i in range(0, len(events), 700):
            store.write(list(events[i : i + 700]))
        window = {"start_ms": events[500].ts, "end_ms": events[2_500].ts}
        for flt in [
            EventFilter(agent_ids=("a1",)),
            EventFilter(agent_ids=("a1", "a1")),  # a key given twice counts once
            EventFilter(agent_ids=("a3", "a0", "nobody")),
            EventFilter(agent_ids=("nobody",)),
            EventFilter(session_ids=("a2-s1",)),
            EventFilter(session_ids=("a2-s1", "a2-s0"), agent_ids=("a2", "a3")),
            EventFilter(session_ids=("a2-s1",), agent_ids=("a1",)),  # nothing: not its agent
            EventFilter(agent_ids=("a1", "a2"), event_types=("tool_call",)),
            EventFilter(agent_ids=("a1", "a2"), text="rare"),
            EventFilter(agent_ids=("a1",), **window),
            EventFilter(session_ids=("a0-s0", "a1-s1"), **window),
        ]:
            _check_reads(store, events, flt)
    finally:
        store.close()


class _Recording:
    """A reader connection that keeps each statement run on it, to be explained after."""

    def __init__(self, conn: object, into: list[tuple[str, list[object]]]) -> None:
        self._conn = conn
        self._into = into

    def execute(self, query: str, args: object = ()) -> object:
        self._into.append((query, list(args)))  # type: ignore[call-overload]
        return self._conn.execute(query, args)  # type: ignore[attr-defined]


def _events_rows_read(dsn: str, schema: str, statements: list[tuple[str, list[object]]]) -> int:
    """How many rows of `events` the statements read (returned or filtered out), by EXPLAIN
    ANALYZE of each with its own values."""
    import psycopg

    def rows(node: dict[str, object]) -> int:
        own = 0
        if node.get("Relation Name") == "events" and node["Node Type"] != "Bitmap Index Scan":
            seen = sum(
                cast(float, node.get(k, 0))
                for k in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")
            )
            own = round(seen * cast(float, node["Actual Loops"]))
        plans = cast(list[dict[str, object]], node.get("Plans", []))
        return own + sum(rows(child) for child in plans)

    total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute(f'SET search_path TO "{schema}"')
        for query, args in statements:
            cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", args)
            row = cur.fetchone()
            assert row is not None
            total += rows(row[0][0]["Plan"])
    return total


# Of 40,000 events a millisecond apart: one agent's 5,000 first, then 35,000 of 35 others.
# Ids 1,001 to 4,095: the range ends where a block of ids (SPAN_IDS) does.
_READ_CASES = {
    "time range": (EventFilter(start_ms=1_001_000, end_ms=1_004_095), range(4_095, 3_995, -1)),
    "text everywhere": (EventFilter(text="LOREM ipsum"), range(40_000, 39_900, -1)),
    "quiet agent": (EventFilter(agent_ids=("old",)), range(5_000, 4_900, -1)),
}


@pytest.mark.parametrize("case", list(_READ_CASES))
def test_postgres_newest_100_read_about_what_they_return(
    pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The newest 100 of a time range, of a text search that matches everything, and of an
    agent gone quiet read a few hundred rows of 40,000, not the table: the planner walked
    the primary key past every newer event for a range, scanned and sorted the table for a
    search it guessed rare, and for one agent (`= ANY`, or `=` when it guessed the agent
    common) walked the primary key too."""
    import psycopg

    from aster_studio.store.postgres import PostgresStore

    dsn, schema = pg_schema
    store = PostgresStore(dsn, schema=schema)
    store.open()
    try:
        agents = ["old"] * 5_000 + [f"new{n % 35}" for n in range(35_000)]
        events = [ev(a, "x", 1_000_000 + n, text="lorem ipsum") for n, a in enumerate(agents)]
        for i in range(0, len(events), 5_000):
            store.write(list(events[i : i + 5_000]))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ANALYZE "{schema}".events')
        statements: list[tuple[str, list[object]]] = []
        real_read = store._read

        def recorded(work: Callable[..., object], *, snapshot: bool = False) -> object:
            return real_read(lambda conn: work(_Recording(conn, statements)), snapshot=snapshot)

        monkeypatch.setattr(store, "_read", recorded)
        flt, want = _READ_CASES[case]
        assert [e.id for e in store.events_before(flt, None, 100)] == list(want)
        assert _events_rows_read(dsn, schema, statements) < 500
    finally:
        store.close()


def test_postgres_schema_1_gets_the_receive_times_of_its_events_and_no_ts_index(
    pg_schema: tuple[str, str],
) -> None:
    import psycopg
    from psycopg import sql

    from aster_studio.store.postgres import MIGRATIONS, PostgresStore

    dsn, schema = pg_schema
    events = _stepping_clock_events(5_000)
    store = PostgresStore(dsn, schema=schema)
    store.open()
    store.write(list(events))
    store.close()
    # Back to schema 1 as a release before spans left it: an index on ts, no spans.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("DROP TABLE event_spans")
        conn.execute("DROP TABLE console_sessions")
        conn.execute("CREATE INDEX events_by_ts ON events (ts)")
        conn.execute("UPDATE meta SET value = 1 WHERE name = 'schema_version'")
    store = PostgresStore(dsn, schema=schema)
    store.open()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            assert conn.execute("SELECT to_regclass('events_by_ts')").fetchone() == (None,)
            version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'")
            assert version.fetchone() == (len(MIGRATIONS),)
        stepped = events[1_200].ts
        for start, end in [(stepped, stepped + 1), (events[100].ts, events[4_900].ts)]:
            _check_reads(store, events, EventFilter(start_ms=start, end_ms=end))
        # Written after the upgrade, in a block of its own and one already there.
        later = [ev("a0", "x", 500, session="a0-s0"), *_stepping_clock_events(10)]
        store.write(list(later))
        _check_reads(store, events + later, EventFilter(start_ms=400, end_ms=600))
        _check_reads(store, events + later, EventFilter(start_ms=stepped, end_ms=stepped + 1))
    finally:
        store.close()
