"""Events found by agent, session and time through posting lists, against a plain filter."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from contextlib import closing
from pathlib import Path

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aster_studio.models import EventFilter, StoredEvent
from aster_studio.store import SqliteStore, _postings
from tests.support.events import Numberer

AGENTS = ("a0", "a1", "a2", "a3")
SESSIONS = ("s0", "s1", "s2", None)


def events(count: int, seed: int, first: int = 1) -> list[StoredEvent]:
    """Interleaved events of a few agents, some sessions, types, severities and times.

    Receive times rise by a millisecond an event, except where the wall clock steps back.
    """
    rng = random.Random(seed)
    numbers = Numberer(first)
    out = []
    ts = 1_000
    for n in range(count):
        ts += -rng.randint(5, 60) if rng.random() < 0.03 else 1
        agent = rng.choice(AGENTS)
        # a few agents dominate, as a busy agent does beside quiet ones
        if rng.random() < 0.5:
            agent = "a0"
        etype = rng.choice(("text_chunk", "error", "tool_call"))
        out.append(
            numbers.event(
                agent,
                etype,
                ts,
                session=rng.choice(SESSIONS),
                severity="error" if etype == "error" else None,
                channel=rng.choice(("stream", "progress")),
                payload={"event_type": etype, "text": f"event {n} {'needle' if n % 7 else ''}"},
            )
        )
    return out


def write_in_commits(store: SqliteStore, rows: list[StoredEvent], seed: int) -> None:
    rng = random.Random(seed)
    i = 0
    while i < len(rows):
        size = rng.choice((1, 2, 3, 5, 13, 40))
        store.write(list(rows[i : i + size]))
        i += size


FILTERS = [
    EventFilter(agent_ids=("a0",)),
    EventFilter(agent_ids=("a3",)),
    EventFilter(agent_ids=("a1", "a2")),
    EventFilter(agent_ids=("nobody",)),
    EventFilter(session_ids=("s1",)),
    EventFilter(session_ids=("s0", "s2")),
    EventFilter(agent_ids=("a0",), session_ids=("s1",)),
    EventFilter(agent_ids=("a0", "a1"), event_types=("error",)),
    EventFilter(session_ids=("s2",), channels=("stream",), text="needle"),
    EventFilter(agent_ids=("a2",), start_ms=1_100, end_ms=1_250),
    EventFilter(agent_ids=("a0",), start_ms=99_999),
    EventFilter(session_ids=("s0",), start_ms=1_050),
    EventFilter(start_ms=1_100, end_ms=1_250),
    EventFilter(start_ms=1_150),
    EventFilter(end_ms=1_040),
    EventFilter(end_ms=0),
    EventFilter(event_types=("error",), start_ms=1_030, end_ms=1_200),
]


def matches(flt: EventFilter, e: StoredEvent) -> bool:
    return (
        (not flt.agent_ids or e.agent_id in flt.agent_ids)
        and (not flt.session_ids or e.session_id in flt.session_ids)
        and (not flt.channels or e.channel in flt.channels)
        and (not flt.event_types or e.event_type in flt.event_types)
        and (flt.start_ms is None or e.ts >= flt.start_ms)
        and (flt.end_ms is None or e.ts < flt.end_ms)
        and (not flt.text or flt.text in e.payload.decode())
    )


def check_reads(store: SqliteStore, rows: list[StoredEvent]) -> None:
    top = rows[-1].id + 1
    for flt in FILTERS:
        expected = [e for e in rows if matches(flt, e)]
        assert store.count_events(flt) == len(expected), flt
        for limit in (1, 7, 1_000):
            for cursor in (0, 1, top // 3, top // 2, top - 2, top):
                newer = [e for e in expected if e.id > cursor]
                assert store.events_after(flt, cursor, limit) == newer[:limit], (flt, cursor)
                older = [e for e in reversed(expected) if e.id < cursor]
                assert store.events_before(flt, cursor, limit) == older[:limit], (flt, cursor)
            assert store.events_before(flt, None, limit) == expected[::-1][:limit], flt
    for start, end in ((0, 10_000), (1_100, 1_250), (1_150, 1_151), (1_300, 99_999), (5, 6)):
        types = Counter(e.event_type for e in rows if start <= e.ts < end)
        assert store.event_counts_by_type(start, end) == types, (start, end)


def posted_through(path: Path) -> int:
    with closing(apsw.Connection(str(path))) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name = 'posted_through'").fetchone()
        return int(row[0])


@pytest.mark.parametrize("posting_events", [1, 9, 50, 10_000])
def test_reads_by_agent_and_session_match_a_plain_filter(
    tmp_path: Path, posting_events: int
) -> None:
    rows = events(400, seed=posting_events)
    store = SqliteStore(tmp_path / "p.db", synchronous="OFF", posting_events=posting_events)
    store.open()
    try:
        write_in_commits(store, rows, seed=1)
        check_reads(store, rows)
    finally:
        store.close()
    watermark = posted_through(tmp_path / "p.db")
    if posting_events > len(rows):
        assert watermark == 0
    else:  # posted in whole transactions (of at most 40 events), at least every posting_events
        assert 0 <= rows[-1].id - watermark < posting_events + 40


def test_unposted_events_are_found_and_posted_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    rows = events(300, seed=3)
    one = SqliteStore(path, synchronous="OFF", posting_events=100)
    one.open()
    write_in_commits(one, rows[:250], seed=2)
    one.close()  # as after a crash: what is not posted is only in the events table
    left = posted_through(path)
    assert 0 < left < rows[249].id

    two = SqliteStore(path, synchronous="OFF", posting_events=20)
    two.open()  # more than 20 unposted: posted at open
    try:
        assert posted_through(path) == rows[249].id
        write_in_commits(two, rows[250:], seed=4)
        check_reads(two, rows)
    finally:
        two.close()


def test_a_database_from_before_postings_is_listed_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_studio.store import sqlite as backend

    path = tmp_path / "v5.db"
    rows = events(500, seed=5)
    monkeypatch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:5])
    old = SqliteStore(path, synchronous="OFF", posting_events=1_000_000)
    old.open()
    write_in_commits(old, rows, seed=6)
    old.close()
    monkeypatch.undo()

    new = SqliteStore(path, synchronous="OFF", posting_events=64)
    new.open()
    try:
        assert posted_through(path) == rows[-1].id
        with closing(apsw.Connection(str(path))) as conn:
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "events_by_agent" not in indexes
        assert "events_by_session" not in indexes
        check_reads(new, rows)
    finally:
        new.close()


def test_a_database_posted_before_time_ranges_gets_them_at_open(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    rows = events(5_000, seed=9)
    old = SqliteStore(path, synchronous="OFF", posting_events=700)
    old.open()
    write_in_commits(old, rows, seed=10)
    old.close()
    with closing(apsw.Connection(str(path))) as conn:  # back to schema 6, as it left it
        conn.execute(
            "DROP TABLE posted_times; DROP INDEX events_of_rare_types; "
            "DROP TABLE console_sessions; "
            "CREATE INDEX events_by_ts ON events (ts); "
            "ALTER TABLE sessions DROP COLUMN error_count; "
            "ALTER TABLE prices DROP COLUMN cache_read_per_m; "
            "ALTER TABLE prices DROP COLUMN cache_write_per_m; PRAGMA user_version = 6"
        )
    posted = posted_through(path)
    assert 0 < posted < rows[-1].id

    new = SqliteStore(path, synchronous="OFF", posting_events=700)
    new.open()
    try:
        with closing(apsw.Connection(str(path))) as conn:
            ranges = conn.execute("SELECT last_id, min_ts, max_ts FROM posted_times").fetchall()
            indexes = conn.execute("PRAGMA index_list(events)").fetchall()
            assert [row[1] for row in indexes] == ["events_of_rare_types"]  # no `ts` index
        # The posted events' times in runs of 2,000 ids, each run's bounds as its events' own.
        assert [r[0] for r in ranges] == [1_999, 3_999, posted]
        starts = [0] + [r[0] for r in ranges]
        for low, (high, min_ts, max_ts) in zip(starts, ranges, strict=False):
            times = [e.ts for e in rows if low < e.id <= high]
            assert (min_ts, max_ts) == (min(times), max(times))
        check_reads(new, rows)
    finally:
        new.close()


def test_a_failed_write_posts_nothing_and_keeps_the_unposted_events(tmp_path: Path) -> None:
    rows = events(40, seed=7)
    store = SqliteStore(tmp_path / "f.db", synchronous="OFF", posting_events=25)
    store.open()
    try:
        store.write(rows[:30])  # 30 unposted: the next transaction posts them
        assert posted_through(tmp_path / "f.db") == 0
        bad = rows[35]._replace(payload=object())  # type: ignore[arg-type]
        with pytest.raises(Exception, match="failed"):
            store.write([*rows[30:35], bad])
        assert posted_through(tmp_path / "f.db") == 0  # its posting was rolled back with it
        store.write(rows[30:35])  # the retry, as the pipeline makes it: posts the first 30
        assert posted_through(tmp_path / "f.db") == rows[29].id
        store.write(rows[35:])
        assert posted_through(tmp_path / "f.db") == rows[29].id  # 10 unposted, under 25
        check_reads(store, rows)
    finally:
        store.close()


# ---- the merge of several keys' postings, on its own ----

_key_runs = st.lists(st.integers(0, 3), min_size=0, max_size=120)


def _postings_of(
    keys: list[int], cut_every: int
) -> tuple[dict[int, list[tuple[int, int, bytes]]], list[int]]:
    """Ids 1.. owned by `keys[i]`, posted every `cut_every` ids per flush, as the store does."""
    by_key: dict[int, list[tuple[int, int, bytes]]] = {}
    for start in range(0, len(keys), cut_every):
        flush = range(start + 1, min(start + cut_every, len(keys)) + 1)
        grouped: defaultdict[str | None, list[int]] = defaultdict(list)
        _postings.add(grouped, flush, [str(keys[i - 1]) for i in flush])
        for key, last_id, first_id, packed in _postings.rows(grouped):
            by_key.setdefault(int(key), []).append((last_id, first_id, packed))
    return by_key, list(range(1, len(keys) + 1))


@settings(max_examples=200, deadline=None)
@given(_key_runs, st.integers(1, 30), st.sets(st.integers(0, 3), min_size=1), st.integers(0, 130))
def test_merged_postings_give_every_id_once_in_order(
    keys: list[int], cut_every: int, wanted: set[int], cursor: int
) -> None:
    by_key, ids = _postings_of(keys, cut_every)
    mine = [i for i in ids if keys[i - 1] in wanted]
    ascending = [sorted(by_key.get(k, [])) for k in wanted]
    descending = [sorted(by_key.get(k, []), reverse=True) for k in wanted]
    after = [i for run in _postings.oldest_first(ascending, cursor) for i in run]
    assert after == [i for i in mine if i > cursor]
    before = [i for run in _postings.newest_first(descending, cursor) for i in run]
    assert before == [i for i in reversed(mine) if i < cursor]
    assert [i for b in _postings.batched([after, after], 7) for i in b] == after + after
    assert all(len(b) <= 7 for b in _postings.batched([after], 7))


def test_reads_during_writes_see_one_consistent_snapshot(tmp_path: Path) -> None:
    """The watermark, the tail and the postings are read in one transaction: a read racing the
    writer's posting sees each event once, with no gap, never half of a posting write."""
    rows = events(3_000, seed=8)
    store = SqliteStore(tmp_path / "c.db", synchronous="OFF", posting_events=25)
    store.open()
    flt = EventFilter(agent_ids=("a0",))
    mine = [e for e in rows if e.agent_id == "a0"]
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            oldest_first = store.events_after(flt, 0, 10_000)
            if oldest_first != mine[: len(oldest_first)]:
                seen.append(f"oldest first: {len(oldest_first)} events, not a prefix")
            newest_first = store.events_before(flt, None, 10_000)[::-1]
            if newest_first != mine[: len(newest_first)]:
                seen.append(f"newest first: {len(newest_first)} events, not a prefix")
            count = store.count_events(flt)
            if not len(oldest_first) <= count <= len(mine):
                seen.append(f"count {count}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(0, len(rows), 10):
            store.write(list(rows[i : i + 10]))
    finally:
        done.set()
        reader.join(timeout=30)
        store.close()
    assert not reader.is_alive()
    assert seen == []


def test_ids_are_grouped_by_key_in_order_and_rows_leave_out_no_session() -> None:
    grouped: defaultdict[str | None, list[int]] = defaultdict(list)
    _postings.add(grouped, [5, 6, 7], ["a", None, "a"])
    _postings.add(grouped, [9, 12], ["b", "a"])
    assert grouped == {"a": [5, 7, 12], None: [6], "b": [9]}
    assert [
        (key, last, first, list(_postings.unpack(blob)))
        for key, last, first, blob in _postings.rows(grouped)
    ] == [("a", 12, 5, [5, 7, 12]), ("b", 9, 9, [9])]
