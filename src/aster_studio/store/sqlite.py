"""The embedded SQLite store: WAL, one writer connection, one reader connection per thread."""

from __future__ import annotations

import bisect
import logging
import operator
import os
import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Final

import apsw
import orjson

from ..errors import MigrationError, StoreError
from ..models import (
    AgentKey,
    AgentRecord,
    AuditRecord,
    ConsoleSession,
    EventFilter,
    Price,
    RequestRecord,
    SessionRecord,
    StoredEvent,
    Usage,
    UsageQuery,
    UsageRow,
    UsageTotals,
    counts_as_error,
    session_outcome,
)
from ..pricing import DEFAULT_PRICES, PriceTable
from . import _postings
from ._base import (
    AddAudit,
    AgentState,
    CommitResult,
    DeleteAgent,
    DeletePrice,
    EditAgent,
    EndSession,
    MarkObserved,
    MarkProducer,
    RecordUsage,
    SaveRequest,
    SetPrice,
    UpsertAgent,
    UpsertSession,
    WriteOp,
)
from ._lock import WriterLock
from ._rows import USAGE_OF_EVENTS, request_of, request_row, usage_of

log = logging.getLogger(__name__)

# The event types indexed by type (schema 14): those read by type alone, in windows of many
# other events. A read of only these types repeats the index's condition, word for word, so
# that SQLite sees the index holds every row it asks for. Changing them takes a migration that
# makes the index again.
RARE_TYPES: Final = (
    "error",
    "step_complete",
    "tool:start",
    "tool:end",
    "tool:error",
    "tool:canceled",
)
_RARE_SET: Final = frozenset(RARE_TYPES)
# Equal whatever the case as `lower(event_type) = ...` is, without making the lower-case copy
# (and a list for `IN`, which SQLite built for every row inserted: 1.3 µs a row).
_RARE: Final = "(" + " OR ".join(f"event_type = '{t}' COLLATE NOCASE" for t in RARE_TYPES) + ")"

# Versioned migrations: index + 1 is the schema version. Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT,
        model TEXT,
        template_id TEXT,
        capabilities TEXT NOT NULL DEFAULT '[]',
        metadata TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'ready',
        registered_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        last_event_at INTEGER,
        current_session_id TEXT,
        implicit INTEGER NOT NULL DEFAULT 0,
        event_count INTEGER NOT NULL DEFAULT 0,
        error_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        ended_at INTEGER,
        metadata TEXT NOT NULL DEFAULT '{}',
        event_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at);
    CREATE INDEX sessions_by_update ON sessions (updated_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL,
        session_id TEXT,
        channel TEXT NOT NULL,
        event_type TEXT NOT NULL,
        severity TEXT,
        ts INTEGER NOT NULL,
        client_ts INTEGER,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_by_agent ON events (agent_id, id);
    CREATE INDEX events_by_session ON events (session_id, id);
    CREATE INDEX events_by_ts ON events (ts);
    CREATE TABLE usage (
        event_id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        session_id TEXT,
        model TEXT,
        ts INTEGER NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL DEFAULT 0,
        cache_creation INTEGER NOT NULL DEFAULT 0,
        reasoning INTEGER NOT NULL DEFAULT 0,
        cost REAL
    );
    CREATE INDEX usage_by_ts ON usage (ts);
    CREATE INDEX usage_by_agent ON usage (agent_id, ts);
    CREATE INDEX usage_by_session ON usage (session_id);
    CREATE TABLE prices (
        model TEXT PRIMARY KEY,
        input_per_m REAL NOT NULL,
        output_per_m REAL NOT NULL,
        currency TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE producers (
        id TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        session_id TEXT,
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        request TEXT NOT NULL,
        response TEXT,
        decided_by TEXT,
        decided_at INTEGER,
        delivered_at INTEGER,
        acknowledged_at INTEGER,
        agent_response TEXT,
        event_cursor INTEGER
    );
    CREATE INDEX requests_by_status ON requests (status, created_at);
    CREATE INDEX requests_by_agent ON requests (agent_id, created_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        request_id TEXT,
        agent_id TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_by_request ON audit (request_id);
    CREATE INDEX audit_by_agent ON audit (agent_id, id);
    """,
    """
    CREATE TABLE agent_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        pattern TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # Ids are reserved by the store itself (reserve_event_ids) since version 4: AUTOINCREMENT's
    # sqlite_sequence row, rewritten for every insert, cost a tenth of the writer's time per
    # event. The table is rebuilt without it; its sequence becomes the reservation's floor, so
    # no id is ever handed out twice.
    """
    CREATE TABLE events_v5 (
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        session_id TEXT,
        channel TEXT NOT NULL,
        event_type TEXT NOT NULL,
        severity TEXT,
        ts INTEGER NOT NULL,
        client_ts INTEGER,
        payload TEXT NOT NULL
    );
    INSERT INTO events_v5 SELECT * FROM events ORDER BY id;
    INSERT INTO meta SELECT 'id_ceiling', seq FROM sqlite_sequence WHERE name = 'events'
        ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value);
    DROP TABLE events;
    ALTER TABLE events_v5 RENAME TO events;
    CREATE INDEX events_by_agent ON events (agent_id, id);
    CREATE INDEX events_by_session ON events (session_id, id);
    CREATE INDEX events_by_ts ON events (ts);
    """,
    # Version 6 finds events by agent and session through posting lists (see _postings) instead
    # of the two indexes, which cost half the writer's time at small group commits. The
    # postings are built at the next open from the events above the watermark, here 0.
    """
    CREATE TABLE agent_postings (
        agent_id TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        first_id INTEGER NOT NULL,
        ids BLOB NOT NULL,
        PRIMARY KEY (agent_id, last_id)
    ) WITHOUT ROWID;
    CREATE TABLE session_postings (
        session_id TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        first_id INTEGER NOT NULL,
        ids BLOB NOT NULL,
        PRIMARY KEY (session_id, last_id)
    ) WITHOUT ROWID;
    DROP INDEX events_by_agent;
    DROP INDEX events_by_session;
    INSERT INTO meta VALUES ('posted_through', 0);
    """,
    # Version 7 finds time ranges through the receive times of each posting's events, written
    # with it (see _id_range), instead of an index on `ts`, the last one written per event.
    # What is already posted gets its ranges here, in runs of 2,000 ids.
    """
    CREATE TABLE posted_times (
        last_id INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL
    );
    INSERT INTO posted_times
        SELECT max(id), min(ts), max(ts) FROM events
        WHERE id <= (SELECT value FROM meta WHERE name = 'posted_through')
        GROUP BY id / 2000;
    DROP INDEX events_by_ts;
    """,
    # Version 8 adds events to their agents' counts with the postings (see _posting_step)
    # instead of in every commit. Until now every committed event was counted.
    """
    INSERT OR IGNORE INTO meta SELECT 'counted_through', coalesce(max(id), 0) FROM events;
    """,
    # Version 9 does the same for the sessions' counts and `updated_at`, which every commit
    # wrote until now: first the agents' rows catch up with every event, so that the one mark
    # `counted_through` stands for both.
    """
    UPDATE agents SET event_count = event_count + c.n, error_count = error_count + c.errors,
        last_event_at = max(coalesce(last_event_at, 0), c.last)
    FROM (
        SELECT agent_id, count(*) AS n, sum(event_type = 'error') AS errors, max(ts) AS last
        FROM events WHERE id > (SELECT value FROM meta WHERE name = 'counted_through')
        GROUP BY agent_id
    ) AS c
    WHERE agents.id = c.agent_id;
    UPDATE meta SET value = (SELECT coalesce(max(id), 0) FROM events)
    WHERE name = 'counted_through';
    """,
    # Version 10 keeps the events of deleted agents counted: a deleted row took its count
    # with it, and the overview's total of stored events dropped. `forgotten_events` counts
    # the events whose agent has no row; it starts with those counted until now (those past
    # `counted_through` are counted at each open). A deleted agent that came back since has
    # a row again, and the events of its first life stay uncounted.
    """
    INSERT OR IGNORE INTO meta SELECT 'forgotten_events', count(*) FROM events
    WHERE id <= (SELECT value FROM meta WHERE name = 'counted_through')
        AND agent_id NOT IN (SELECT id FROM agents);
    """,
    # Version 11 counts each session's errors (`counts_as_error`), with its events, so that
    # the traces list filters by status (ok: completed without an error) in its query. The
    # sessions' rows get the errors counted until now; those past `counted_through` are
    # counted at each open.
    """
    ALTER TABLE sessions ADD COLUMN error_count INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET error_count = c.n
    FROM (
        SELECT session_id, count(*) AS n FROM events
        WHERE id <= (SELECT value FROM meta WHERE name = 'counted_through')
            AND session_id IS NOT NULL AND lower(event_type) = 'error'
            AND (severity IS NULL
                OR lower(severity) NOT IN ('debug', 'info', 'notice', 'warn', 'warning'))
        GROUP BY session_id
    ) AS c
    WHERE sessions.id = c.session_id;
    """,
    # Version 12 marks the events whose control requests are written (`MarkObserved`): those
    # past the mark are replayed at start, since a crash between an event's commit and its
    # request's lost the request. What is stored already counts as written: a request lost
    # by an earlier release is not raised again from history.
    """
    INSERT OR IGNORE INTO meta SELECT 'observed_through', coalesce(max(id), 0) FROM events;
    """,
    # Version 13 gives prices their rates of cached input, read and written (per million
    # tokens); NULL is the input rate times the provider's factors (`models.cache_rates`).
    """
    ALTER TABLE prices ADD COLUMN cache_read_per_m REAL;
    ALTER TABLE prices ADD COLUMN cache_write_per_m REAL;
    """,
    # Version 14 indexes the events of the few types the overview and metrics look for by
    # type alone (errors, finished steps, tools: `RARE_TYPES`): counting a week's errors read
    # every event of the week (0.47 s at 3,000,000). Partial, so the other events (most of
    # them: text) cost the writer only the test of their type.
    f"""
    CREATE INDEX events_of_rare_types ON events (event_type COLLATE NOCASE, id) WHERE {_RARE};
    """,
    # Version 15 keeps the console's login sessions, so a restart logs nobody out. A row is
    # named by the SHA-256 of its session id: the id is the cookie, and a copy of the
    # database must let nobody in.
    """
    CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        credential TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    """,
)

# The writer gives way between statements in commits of at most this many ops (see
# `SqliteStore._give_way`): the commits of a server that keeps up.
GIVE_WAY_OPS = 1_000
_SCHED_YIELD = hasattr(os, "sched_yield")


# Events written to the postings at a time (see _postings): each read by agent or session scans
# at most this many newest events, and at 50 agents a posting row stands for 40 events or more.
POSTING_EVENTS = 2_000
# Rows (counts updated, postings inserted) a commit writes of a posting round (`_posting_step`).
# Fifty agents' and fifty sessions' in one commit held the core for 3-10 ms every 200 ms at
# 10,000 events/s on a slow machine, and the events that came meanwhile waited for it.
POSTING_ROWS = 50

# Ids looked up at a time when reading events through postings, and when counting them.
POSTING_READ = 500
POSTING_COUNT = 5_000
_ID_LIST = "(SELECT value FROM json_each(?))"  # ids passed as one JSON array
NO_ID = 1 << 62  # above every event id

# Event ids reserved ahead of use (see Store.reserve_event_ids): far more than can be numbered
# but not yet committed at any time (the write queue holds at most tens of thousands).
ID_BLOCK = 1_000_000

# Sums of a group of usage rows, in UsageTotals/UsageRow order after the key. `total` adds in
# floating point and the cast saturates, where `sum` fails the whole read past 64 bits (rows
# stored before counts were bounded at ingest can get there).
_USAGE_SUMS = (
    "CAST(total(input) AS INTEGER), CAST(total(output) AS INTEGER), total(cost), "
    "CAST(total(CASE WHEN cost IS NULL THEN input + output + cache_read + cache_creation "
    "ELSE 0 END) AS INTEGER), count(*), CAST(total(cache_read) AS INTEGER), "
    "CAST(total(cache_creation) AS INTEGER), CAST(total(reasoning) AS INTEGER)"
)


def _totals(row: tuple[Any, ...]) -> UsageTotals:
    """The UsageTotals of a row of a key and the `_USAGE_SUMS`."""
    return UsageTotals(row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


_SEED_PRICES = "INSERT OR IGNORE INTO prices VALUES (?, ?, ?, ?, 0)"

# A session's trace status (`session_outcome`) as a condition on its row, which counts its
# errors (the pending ones aside: `list_sessions`).
_OUTCOMES = {
    "running": "status = 'active'",
    "ok": "status = 'completed' AND error_count = 0",
    "error": "status <> 'active' AND (status <> 'completed' OR error_count > 0)",
}


def _where_all(conditions: Sequence[str]) -> str:
    """A WHERE clause of all `conditions`, or none."""
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _owned(param: int) -> str:
    """A session op's `owners` (parameter `param`: a JSON list, or NULL for any) against the
    stored session's agent."""
    return f"(?{param} IS NULL OR sessions.agent_id IN (SELECT value FROM json_each(?{param})))"


def _owners_json(owners: tuple[str, ...] | None) -> str | None:
    return None if owners is None else _json(list(owners))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# A StoredEvent's fields as a plain tuple. apsw binds a row through PySequence_Fast, which
# returns an exact tuple as it is but copies anything else, a named tuple too, into a new list
# item by item: about 1,100 instructions per event (callgrind), where a slice takes a tenth.
_FIELDS = operator.itemgetter(slice(None))

# The postings a read goes through: (table, key column, keys).
_Keyed = tuple[str, str, tuple[str, ...]]

# Queries return plain tuples, typed loosely: each caller builds its typed record from them.
Row = tuple[Any, ...]


def _all(conn: apsw.Connection, sql: str, args: apsw.Bindings = ()) -> list[Row]:
    return conn.execute(sql, args).fetchall()


def _one(conn: apsw.Connection, sql: str, args: apsw.Bindings = ()) -> Row | None:
    row: Row | None = conn.execute(sql, args).fetchone()
    return row


def _scalar(conn: apsw.Connection, sql: str, args: apsw.Bindings = ()) -> Any:
    """The first column of the first row, for queries that always return one (aggregates)."""
    row = _one(conn, sql, args)
    if row is None:
        raise StoreError(f"no row from {sql!r}")
    return row[0]


def _ascending(times: Sequence[int]) -> bool:
    """Whether receive times rise with ids, as they do unless the wall clock stepped back."""
    return all(map(operator.le, times, islice(times, 1, None)))


def _newest(keys: Sequence[Any], times: Sequence[int], ascending: bool) -> dict[Any, int]:
    """The newest of `times` for each of `keys` (the two aligned); `ascending`: `_ascending`."""
    if ascending:  # the last is the max
        return dict(zip(keys, times, strict=True))
    newest: dict[Any, int] = {}
    for key, ts in zip(keys, times, strict=True):
        newest[key] = max(ts, newest.get(key, ts))
    return newest


def _erring(types: Sequence[str]) -> bool:
    """Whether any of `types` is `error`, whatever its case (`Error`): checked over the
    commit's few distinct types, not each event's, which is the writer's time per event."""
    return "error" in types or any(t.lower() == "error" for t in set(types))


def _session_counts(
    session_ids: Sequence[str | None],
    times: Sequence[int],
    types: Sequence[str],
    severities: Sequence[str | None],
    ascending: bool,
    erring: bool,
) -> list[tuple[str, int, int, int]]:
    """(session id, events, newest receive time, errors) for events given column by column;
    `erring`: `_erring(types)`."""
    last = _newest(session_ids, times, ascending)
    errors = _errors_by(session_ids, types, severities, erring)
    counts = Counter(session_ids).items()
    return [(s, n, last[s], errors.get(s, 0)) for s, n in counts if s is not None]


def _errors_by(
    keys: Sequence[Any], types: Sequence[str], severities: Sequence[str | None], erring: bool
) -> dict[Any, int]:
    """How many of the events, given column by column, are errors, per key (agent or session).

    Most commits hold no error (`erring` false): no second Counter then. Read it with `get`:
    a Counter's own lookup of a missing key calls its `__missing__` in Python (1,200
    instructions).
    """
    if not erring:
        return {}
    return Counter(
        k for k, t, s in zip(keys, types, severities, strict=True) if counts_as_error(t, s)
    )


# Committed events not yet in their sessions' rows, per session: (events, newest receive time,
# errors).
SessionCounts = dict[str, tuple[int, int, int]]


def _add_session_counts(into: SessionCounts, counts: Iterable[tuple[str, int, int, int]]) -> None:
    """Add (session id, events, newest receive time, errors) to `into`, replacing each entry
    whole, never changing one in place, so that a reader's copy of `into` is consistent."""
    for session_id, n, last, errors in counts:
        entry = into.get(session_id)
        into[session_id] = (
            (n, last, errors)
            if entry is None
            else (entry[0] + n, max(entry[1], last), entry[2] + errors)
        )


def _agent_counts(
    agent_ids: Sequence[str],
    times: Sequence[int],
    types: Sequence[str],
    severities: Sequence[str | None],
    ascending: bool,
    erring: bool,
) -> list[tuple[str, int, int, int]]:
    """(agent id, events, errors, newest receive time) for events given column by column;
    `erring`: `_erring(types)`."""
    last = _newest(agent_ids, times, ascending)
    errors = _errors_by(agent_ids, types, severities, erring)
    return [(a, n, errors.get(a, 0), last[a]) for a, n in Counter(agent_ids).items()]


class _Round:
    """A posting round under way: the rows it has still to write, and its watermark."""

    def __init__(
        self, agents: list[_postings.Row], sessions: list[_postings.Row], to: int, times: list[int]
    ) -> None:
        self.agents = agents
        self.sessions = sessions
        self.to = to  # the watermark once every row is written
        self.min_ts = min(times)
        self.max_ts = max(times)


# What a commit wrote of a round: the round, and how many of its agents' and sessions' rows.
_Step = tuple[_Round, int, int]


class SqliteStore:
    """Store events and state in one SQLite file; see the Store protocol for the contract."""

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", posting_events: int = POSTING_EVENTS
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._posting_events = posting_events
        # Stored events above the watermark `_posted_through`, not yet in a posting (writer only).
        self._posted_through = 0
        self._unposted_ids: list[int] = []
        self._unposted_times: list[int] = []
        # Their ids by agent and by session, grouped as each commit adds them.
        self._unposted_by_agent: defaultdict[str | None, list[int]] = defaultdict(list)
        self._unposted_by_session: defaultdict[str | None, list[int]] = defaultdict(list)
        self._round: _Round | None = None  # the posting round under way
        # Committed events not yet in their agents' and sessions' rows (`counted_through` in
        # `meta` marks what is): per agent, [events, errors, newest receive time]. Written with
        # the postings.
        self._uncounted: dict[str, list[int]] = {}
        # The same for sessions, which the API reads while they wait: `_pending_sessions` is
        # (mark, counts, previous mark, previous counts), replaced whole. The rows include
        # every event up to `mark` (`counted_through`) and `counts` the committed
        # ones past it; the previous pair is what the last postings wrote, for a read whose
        # snapshot began before they committed (see `_session_overlay`).
        self._pending_sessions: tuple[int, SessionCounts, int, SessionCounts] = (0, {}, 0, {})
        self._writer: apsw.Connection | None = None
        self._giving_way = False  # this commit yields between statements (`_give_way`)
        self._local = threading.local()
        self._readers: list[apsw.Connection] = []
        self._readers_lock = threading.Lock()
        self._id_ceiling = 0  # ids up to this are reserved durably; 0: this instance numbers none
        self._prices = PriceTable(())
        self._lock = WriterLock(path)  # held from `open` to `close`
        self.store_id = ""  # this database's own id, set at `open`

    # ---- lifecycle ----

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def open(self) -> None:
        """Create the file if needed, migrate it, and load the writer's state.

        Raises DatabaseInUse while another process has it open as its writer (`_lock`).
        """
        self._make_folder()
        self._lock.acquire()
        try:
            self._open_writer()
        except BaseException:
            self.close()  # the writer's connection, if it got that far, and the lock
            raise

    def _make_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc

    def _open_writer(self) -> None:
        try:
            conn = apsw.Connection(str(self.path))
        except apsw.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._writer = conn  # closed by `open` if what follows fails
        try:
            # The first statement reads the file: one that is not SQLite fails here.
            conn.execute("PRAGMA journal_mode=WAL")
        except apsw.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        # Checkpoint every ~40 MB of WAL rather than 4 MB: a page rewritten often (the agents'
        # and sessions' rows) is copied to the database once per checkpoint. The writer's CPU
        # per event: 10.5-10.8 against 11.2-11.8 µs at 50 events a commit (bench_store).
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        self._migrate(conn)
        self._load_unposted(conn)
        self._prices = PriceTable(self.prices())
        self.store_id = self._identity(conn)

    @staticmethod
    def _identity(conn: apsw.Connection) -> str:
        """The database's id, made at its first open: a console that reconnects tells from it
        that the Studio came back on another database, or an emptied one."""
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (secrets.randbits(62) or 1,)
        )
        value = _scalar(conn, "SELECT value FROM meta WHERE name = 'store_id'")
        return f"{int(value):016x}"

    def check_startable(self) -> None:
        """Raise what `open` would for the likeliest reasons a server cannot start: another
        Studio holds the database (DatabaseInUse), its schema is newer than this release
        (MigrationError), or its folder cannot be made (StoreError: a file where a folder
        should be, say). A server checks before it listens, to say so plainly rather than
        from inside its start-up (a traceback and status 3)."""
        self._make_folder()  # as `open` does next, on a first start
        self._lock.acquire()
        try:
            if self.path.exists():
                self._check_version(self._schema_version())
        finally:
            self._lock.release()

    def _schema_version(self) -> int:
        """The file's schema version as it is, neither created nor migrated."""
        try:
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                return int(_scalar(conn, "PRAGMA user_version"))
            finally:
                conn.close()
        except apsw.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise MigrationError(
                f"database {self.path} has schema version {version}, newer than this release "
                f"({len(MIGRATIONS)}); upgrade aster-studio"
            )

    def open_beside_studio(self) -> None:
        """Open for the command line's administrative reads and writes (agent keys, the
        console token) while a running Studio holds the database (`open` raised
        DatabaseInUse). Those go through connections of their own; migrating and the
        writer's state stay the Studio's, so the schema must already be this release's.
        """
        version = self._schema_version()
        if version != len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} is in use by a Studio of another release (schema "
                f"version {version}, this release's {len(MIGRATIONS)}): stop it first"
            )

    def close(self) -> None:
        with self._readers_lock:
            connections = [*self._readers, self._writer]
            self._readers.clear()
            self._writer = None
        left = False
        for conn in connections:
            if conn is None:
                continue
            try:
                conn.close()
            except apsw.ThreadingViolationError:
                # apsw refuses to close a connection another thread is using (a read still
                # running, or a writer past the stop timeout); SQLite closes it once it is freed.
                log.warning("a database connection still in use at close: left to finish")
                left = True
        self._lock.release(file_in_use=left)

    def _migrate(self, conn: apsw.Connection) -> None:
        current = _scalar(conn, "PRAGMA user_version")
        self._check_version(current)
        latest = len(MIGRATIONS)
        if current == 0:
            log.info("creating %s (schema version %s)", self.path, latest)
        elif current < latest:
            log.info("migrating %s from schema version %s to %s", self.path, current, latest)
        for version in range(current + 1, latest + 1):
            log.debug("schema version %s of %s", version, self.path)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if version == 1:
                    conn.executemany(
                        _SEED_PRICES,
                        [
                            (p.model, p.input_per_m, p.output_per_m, p.currency)
                            for p in DEFAULT_PRICES
                        ],
                    )
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except apsw.Error as exc:
                conn.execute("ROLLBACK")
                raise MigrationError(f"migration {version} failed: {exc}") from exc

    def _load_unposted(self, conn: apsw.Connection) -> None:
        """Post what an earlier run left unposted (all of it after migration 6), keep the rest."""
        self._posted_through = int(
            _scalar(conn, "SELECT coalesce(max(value), 0) FROM meta WHERE name = 'posted_through'")
        )
        self._round = None
        self._forget_unposted()  # from the stored marks, with nothing waiting in memory
        counted_through = int(
            _scalar(conn, "SELECT coalesce(max(value), 0) FROM meta WHERE name = 'counted_through'")
        )
        self._pending_sessions = (counted_through, {}, counted_through, {})
        # The rows of a round that did not finish: its events are posted again below. Only the
        # keys of the events above the watermark can have any. (Schema 6 adds the postings; a
        # test may stop the migrations before it.)
        if int(_scalar(conn, "PRAGMA user_version")) >= 6:
            with conn:
                for table, column in (
                    ("agent_postings", "agent_id"),
                    ("session_postings", "session_id"),
                ):
                    conn.execute(
                        f"DELETE FROM {table} WHERE {column} IN "
                        f"(SELECT DISTINCT {column} FROM events WHERE id > ?1) AND last_id > ?1",
                        (self._posted_through,),
                    )
        cursor = conn.execute(
            "SELECT id, agent_id, session_id, ts, event_type, severity FROM events WHERE id > ? "
            "ORDER BY id",
            (self._posted_through,),
        )
        posted = 0
        # In runs of 20,000, so that no posting holds more ids than a read should unpack.
        while chunk := list(islice(cursor, 20_000)):
            ids, agents, sessions, times, types, severities = zip(*chunk, strict=True)
            self._unpost(ids, agents, sessions, times)
            # Events an earlier run counted are not counted again (all of them before version 8).
            start = bisect.bisect_right(ids, counted_through)
            times_left, types_left, severities_left = (
                times[start:],
                types[start:],
                severities[start:],
            )
            ascending = _ascending(times_left)
            erring = _erring(types_left)
            self._uncount(
                _agent_counts(
                    agents[start:], times_left, types_left, severities_left, ascending, erring
                )
            )
            self._uncount_sessions(
                _session_counts(
                    sessions[start:], times_left, types_left, severities_left, ascending, erring
                )
            )
            if len(self._unposted_ids) >= self._posting_events:
                posted += len(self._unposted_ids)
                with conn:
                    step = self._posting_step(conn, whole=True)
                if step is not None:
                    self._stepped(step)
        if posted:
            log.info("listed %d events by agent and session in %s", posted, self.path)

    def _unpost(
        self,
        ids: Sequence[int],
        agents: Iterable[str],
        sessions: Iterable[str | None],
        times: Iterable[int],
    ) -> None:
        """Add committed events, given column by column, to the unposted ones."""
        self._unposted_ids += ids
        self._unposted_times += times
        _postings.add(self._unposted_by_agent, ids, agents)
        _postings.add(self._unposted_by_session, ids, sessions)

    def _posting_step(self, conn: apsw.Connection, *, whole: bool) -> _Step | None:
        """Write this commit's share of the postings, if any; `whole`: all of the round.

        A round begins once `posting_events` committed events wait: its first commit adds them
        to their agents' and sessions' counts, and it lists them in postings by agent and
        session over that commit and the next ones, POSTING_ROWS rows a commit; its last
        moves the watermark. Reads take the postings up to the watermark only, so every
        commit leaves them consistent. A round still under way when the next is due finishes
        at once. What a commit wrote is noted after it (`_stepped`).
        """
        round_ = self._round
        started = round_ is None
        budget = POSTING_ROWS
        if round_ is None:
            if len(self._unposted_ids) < self._posting_events:
                return None
            round_ = _Round(
                _postings.rows(self._unposted_by_agent),
                _postings.rows(self._unposted_by_session),
                max(self._unposted_ids),
                self._unposted_times,
            )
            budget -= self._write_counts(conn, round_.to)
        if whole or (not started and len(self._unposted_ids) >= self._posting_events):
            budget = len(round_.agents) + len(round_.sessions)  # the next round is due
        agents = round_.agents[: max(budget, 0)]
        sessions = round_.sessions[: max(budget - len(agents), 0)]
        if agents:
            conn.executemany("INSERT INTO agent_postings VALUES (?, ?, ?, ?)", agents)
            self._give_way()
        if sessions:
            conn.executemany("INSERT INTO session_postings VALUES (?, ?, ?, ?)", sessions)
            self._give_way()
        finished = len(agents) == len(round_.agents) and len(sessions) == len(round_.sessions)
        if finished:
            conn.execute(
                "INSERT INTO posted_times VALUES (?, ?, ?)",
                (round_.to, round_.min_ts, round_.max_ts),
            )
            conn.execute("UPDATE meta SET value = ? WHERE name = 'posted_through'", (round_.to,))
            self._give_way()
        return round_, len(agents), len(sessions)

    def _write_counts(self, conn: apsw.Connection, through: int) -> int:
        """Add the committed events, all up to `through`, to their agents' and sessions' rows.

        Returns the number of rows updated.
        """
        agents = [
            (n, errors, last, agent_id) for agent_id, (n, errors, last) in self._uncounted.items()
        ]
        conn.executemany(
            "UPDATE agents SET event_count = event_count + ?, error_count = error_count + ?, "
            "last_event_at = max(coalesce(last_event_at, 0), ?) WHERE id = ?",
            agents,
        )
        self._forget_rowless(conn)
        self._give_way()
        sessions = [
            (n, errors, last, session_id)
            for session_id, (n, last, errors) in self._pending_sessions[1].items()
        ]
        conn.executemany(
            "UPDATE sessions SET event_count = event_count + ?, error_count = error_count + ?, "
            "updated_at = max(updated_at, ?) WHERE id = ?",
            sessions,
        )
        self._give_way()
        conn.execute(
            "UPDATE meta SET value = max(value, ?) WHERE name = 'counted_through'", (through,)
        )
        return len(agents) + len(sessions)

    def _forget_rowless(self, conn: apsw.Connection) -> None:
        """Add the pending events of agents without a row (deleted: `DeleteAgent`) to
        `forgotten_events`, for the `UPDATE` of their counts found no row to add them to."""
        if not self._uncounted:
            return
        rowless = _all(
            conn,
            f"SELECT value FROM {_ID_LIST} WHERE value NOT IN (SELECT id FROM agents)",
            (orjson.dumps(list(self._uncounted)).decode(),),
        )
        if rowless:
            forgotten = sum(self._uncounted[r[0]][0] for r in rowless)
            conn.execute(
                "UPDATE meta SET value = value + ? WHERE name = 'forgotten_events'", (forgotten,)
            )

    def _stepped(self, step: _Step) -> None:
        """After the commit of a `_posting_step`: what it wrote leaves the writer's lists."""
        round_, agents, sessions = step
        if round_ is not self._round:  # the commit began it
            # Its events are counted in the rows now, and are the round's to post.
            self._forget_unposted()
            mark, counts, _, _ = self._pending_sessions
            self._pending_sessions = (round_.to, {}, mark, counts)
        del round_.agents[:agents]
        del round_.sessions[:sessions]
        if round_.agents or round_.sessions:
            self._round = round_
        else:  # finished: the commit moved the watermark
            self._posted_through = round_.to
            self._round = None

    def _forget_unposted(self) -> None:
        """Empty the lists of events not yet posted and of agents' counts not yet written."""
        self._uncounted.clear()
        self._unposted_ids.clear()
        self._unposted_times.clear()
        self._unposted_by_agent.clear()
        self._unposted_by_session.clear()

    def ping(self) -> None:
        with self._read() as conn:
            _one(conn, "SELECT 1")

    @contextmanager
    def _read(self) -> Iterator[apsw.Connection]:
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = apsw.Connection(str(self.path))
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        try:
            yield conn
        except apsw.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    # ---- writes (writer thread only) ----

    def reserve_event_ids(self) -> int:
        conn = self._require_writer()
        last = _scalar(
            conn,
            "SELECT max((SELECT coalesce(max(id), 0) FROM events), "
            "coalesce((SELECT value FROM meta WHERE name = 'id_ceiling'), 0))",
        )
        first = int(last) + 1
        self._set_ceiling(conn, first + ID_BLOCK)
        return first

    def release_event_ids(self) -> None:
        conn = self._require_writer()
        if self._id_ceiling:
            # The floor for the next run: the last id stored, kept even if that event is
            # deleted later, so its id is not handed out again.
            conn.execute(
                "UPDATE meta SET value = (SELECT coalesce(max(id), 0) FROM events) "
                "WHERE name = 'id_ceiling'"
            )
            self._id_ceiling = 0

    def _set_ceiling(self, conn: apsw.Connection, ceiling: int) -> None:
        conn.execute(
            "INSERT INTO meta VALUES ('id_ceiling', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (ceiling,),
        )
        self._id_ceiling = ceiling

    def _require_writer(self) -> apsw.Connection:
        if self._writer is None:
            raise StoreError("store is not open")
        return self._writer

    def write(self, ops: list[WriteOp]) -> CommitResult:
        """Apply `ops` in one transaction; return what became durable.

        Events arrive as finished rows (`StoredEvent`, numbered on the loop) and are inserted
        with `executemany` in runs. Once enough have gathered they are listed in the postings
        by agent and session, and added to their agents' and sessions' counts (`_posting_step`,
        over this commit and the next few); until then those counts wait in memory, and the
        reads of sessions add them. The in-memory lists of unposted and uncounted events
        change only after the commit.
        """
        conn = self._require_writer()
        self._giving_way = _SCHED_YIELD and len(ops) <= GIVE_WAY_OPS
        result = CommitResult()
        rows: list[StoredEvent] = []
        usage_rows: list[tuple[Any, ...]] = []
        events = result.events
        step: _Step | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                if type(op) is StoredEvent:
                    rows.append(op)
                elif type(op) is RecordUsage:
                    usage = self._price(op.usage)
                    result.usage.append((op.agent_id, usage))
                    usage_rows.append(
                        (
                            op.event_id,
                            op.agent_id,
                            op.session_id,
                            usage.model,
                            op.ts,
                            usage.input,
                            usage.output,
                            usage.cache_read,
                            usage.cache_creation,
                            usage.reasoning,
                            usage.cost,
                        )
                    )
                else:
                    # Keep statement order: pending events go in before any other kind of op.
                    self._flush_events(conn, rows, events, usage_rows)
                    self._apply(conn, op, result)
            self._flush_events(conn, rows, events, usage_rows)
            # The events of earlier commits, grouped by then: this one's wait for a later round.
            step = self._posting_step(conn, whole=False)
            if result.producers:
                conn.executemany(
                    "INSERT INTO producers (id, last_seq) VALUES (?, ?) ON CONFLICT (id) "
                    "DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                    list(result.producers.items()),
                )
            self._give_way()
            conn.execute("COMMIT")
        except (apsw.Error, TypeError, ValueError, OverflowError) as exc:
            # TypeError/ValueError: a value the driver refuses; the batch is retried op by op by
            # the pipeline so only the bad op is lost, never the writer.
            try:
                conn.execute("ROLLBACK")
            except apsw.Error:
                log.exception("rollback failed")
            self._prices = PriceTable(self._read_prices(conn))
            if self._id_ceiling:
                self._id_ceiling = self._read_ceiling(conn)
            raise StoreError(f"write of {len(ops)} operations failed: {exc}") from exc
        if step is not None:
            self._stepped(step)
        if events:
            # The columns in one pass over the rows (a `list(map(itemgetter))` each took five).
            ids, agent_ids, session_ids, _, types, severities, times, _, _ = zip(
                *events, strict=True
            )
            self._unpost(ids, agent_ids, session_ids, times)
            ascending = _ascending(times)
            erring = _erring(types)
            self._uncount(_agent_counts(agent_ids, times, types, severities, ascending, erring))
            self._uncount_sessions(
                _session_counts(session_ids, times, types, severities, ascending, erring)
            )
        return result

    def _give_way(self) -> None:
        """Let another runnable thread of this core go first, if there is one.

        The writer's statements are CPU work of up to a few milliseconds each (a commit that
        writes the postings takes about 2 ms), and the event loop sharing its core, woken by a
        read meanwhile, otherwise waits until the scheduler preempts the writer: at 10,000
        events/s that set the p99 of delivery. Between statements the writer yields instead,
        keeping its share of the core. Only in the small commits of a server that keeps up:
        in saturation's big ones it cost 8% of the throughput (docs/benchmarks.md).
        """
        if self._giving_way:
            os.sched_yield()

    def _read_ceiling(self, conn: apsw.Connection) -> int:
        row = _one(conn, "SELECT value FROM meta WHERE name = 'id_ceiling'")
        return int(row[0]) if row else 0

    def _flush_events(
        self,
        conn: apsw.Connection,
        rows: list[StoredEvent],
        events: list[StoredEvent],
        usage_rows: list[tuple[Any, ...]],
    ) -> None:
        if rows:
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", map(_FIELDS, rows)
            )
            self._give_way()
            events.extend(rows)
            rows.clear()
            last = events[-1].id
            if self._id_ceiling and last > self._id_ceiling - ID_BLOCK // 2:
                self._set_ceiling(conn, last + ID_BLOCK)  # in this transaction: durable with it
        if usage_rows:
            conn.executemany(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", usage_rows
            )
            usage_rows.clear()

    def _uncount(self, counts: Iterable[tuple[str, int, int, int]]) -> None:
        """Add committed events' agent counts (from `_agent_counts`) to those pending."""
        uncounted = self._uncounted
        for agent_id, n, errors, last in counts:
            entry = uncounted.get(agent_id)
            if entry is None:
                uncounted[agent_id] = [n, errors, last]
            else:
                entry[0] += n
                entry[1] += errors
                entry[2] = max(entry[2], last)

    def _uncount_sessions(self, counts: Iterable[tuple[str, int, int, int]]) -> None:
        """Add committed events' session counts (from `_session_counts`) to those pending.

        Sessions used to be counted with one `UPDATE` each in every commit: 226 µs a commit
        of 50 events from 50 sessions, most of the writer's time at 10,000 events/s
        (docs/benchmarks.md).
        """
        _add_session_counts(self._pending_sessions[1], counts)

    def _price(self, usage: Usage) -> Usage:
        price = self._prices.lookup(usage.model)
        if price is None or not usage.priceable:
            return usage
        return Usage(
            usage.model,
            usage.input,
            usage.output,
            usage.cache_read,
            usage.cache_creation,
            usage.reasoning,
            price.cost(usage.input, usage.output, usage.cache_read, usage.cache_creation),
        )

    def _apply(self, conn: apsw.Connection, op: WriteOp, result: CommitResult) -> None:
        if isinstance(op, UpsertAgent):
            if op.implicit:
                conn.execute(
                    "INSERT OR IGNORE INTO agents (id, registered_at, last_seen, implicit) "
                    "VALUES (?, ?, ?, 1)",
                    (op.id, op.ts, op.ts),
                )
            else:
                conn.execute(
                    "INSERT INTO agents (id, name, model, template_id, capabilities, metadata, "
                    "state, registered_at, last_seen, implicit) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (id) DO UPDATE SET "
                    "name = coalesce(excluded.name, name), "
                    "model = coalesce(excluded.model, model), "
                    "template_id = coalesce(excluded.template_id, template_id), "
                    "capabilities = excluded.capabilities, metadata = excluded.metadata, "
                    "state = excluded.state, last_seen = excluded.last_seen, implicit = 0",
                    (
                        op.id,
                        op.name,
                        op.model,
                        op.template_id,
                        _json(list(op.capabilities)),
                        _json(op.metadata),
                        op.state or "ready",
                        op.ts,
                        op.ts,
                    ),
                )
        elif isinstance(op, EditAgent):
            conn.execute(
                "UPDATE agents SET name = coalesce(?, name), metadata = ? WHERE id = ?",
                (op.name, _json(op.metadata), op.id),
            )
        elif isinstance(op, AgentState):
            conn.execute(
                "UPDATE agents SET state = ?, last_seen = ?, current_session_id = ? WHERE id = ?",
                (op.state, op.last_seen, op.current_session_id, op.id),
            )
        elif isinstance(op, UpsertSession):
            if op.implicit:
                conn.execute(
                    "INSERT OR IGNORE INTO sessions (id, agent_id, status, created_at, updated_at)"
                    " VALUES (?, ?, 'active', ?, ?)",
                    (op.id, op.agent_id, op.ts, op.ts),
                )
            else:
                conn.execute(
                    "INSERT INTO sessions (id, agent_id, status, created_at, updated_at, metadata)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "agent_id = excluded.agent_id, status = excluded.status, "
                    "updated_at = excluded.updated_at, metadata = excluded.metadata, "
                    f"ended_at = NULL WHERE {_owned(7)}",
                    (
                        op.id,
                        op.agent_id,
                        op.status,
                        op.created_at or op.ts,
                        op.ts,
                        _json(op.metadata),
                        _owners_json(op.owners),
                    ),
                )
        elif isinstance(op, EndSession):
            conn.execute(
                "UPDATE sessions SET status = ?, ended_at = ?, updated_at = ? "
                f"WHERE id = ? AND {_owned(5)}",
                (op.status, op.ts, op.ts, op.id, _owners_json(op.owners)),
            )
        elif isinstance(op, MarkProducer):
            if op.seq > result.producers.get(op.producer_id, 0):
                result.producers[op.producer_id] = op.seq
        elif isinstance(op, SetPrice):
            p = op.price
            conn.execute(
                "INSERT INTO prices (model, input_per_m, output_per_m, currency, updated_at, "
                "cache_read_per_m, cache_write_per_m) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET "
                "input_per_m = excluded.input_per_m, output_per_m = excluded.output_per_m, "
                "currency = excluded.currency, updated_at = excluded.updated_at, "
                "cache_read_per_m = excluded.cache_read_per_m, "
                "cache_write_per_m = excluded.cache_write_per_m",
                (
                    p.model,
                    p.input_per_m,
                    p.output_per_m,
                    p.currency,
                    op.ts,
                    p.cache_read_per_m,
                    p.cache_write_per_m,
                ),
            )
            self._prices.set(p)
        elif isinstance(op, DeletePrice):
            conn.execute("DELETE FROM prices WHERE model = ?", (op.model,))
            self._prices.remove(op.model)
        elif isinstance(op, DeleteAgent):
            # Its events stay stored, and counted: what its row counted goes to the events
            # without an agent (its pending events follow with the postings: `_write_counts`).
            conn.execute(
                "UPDATE meta SET value = value + "
                "coalesce((SELECT event_count FROM agents WHERE id = ?), 0) "
                "WHERE name = 'forgotten_events'",
                (op.id,),
            )
            conn.execute("DELETE FROM agents WHERE id = ?", (op.id,))
        elif isinstance(op, SaveRequest):
            r = op.record
            conn.execute(
                "INSERT OR REPLACE INTO requests VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                request_row(r),
            )
        elif isinstance(op, MarkObserved):
            conn.execute(
                "UPDATE meta SET value = max(value, ?) WHERE name = 'observed_through'",
                (op.through,),
            )
        elif isinstance(op, AddAudit):
            conn.execute(
                "INSERT INTO audit (ts, actor, action, request_id, agent_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (op.ts, op.actor, op.action, op.request_id, op.agent_id, _json(op.detail)),
            )

    # ---- administration (rare writes on their own connection; the CLI uses these) ----

    @contextmanager
    def _admin(self) -> Iterator[apsw.Connection]:
        try:
            conn = apsw.Connection(str(self.path))
        except apsw.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except apsw.Error as exc:
            raise StoreError(f"administrative write failed: {exc}") from exc
        finally:
            conn.close()

    def add_key(self, key: AgentKey) -> None:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO agent_keys VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.pattern, key.hash, key.created_at, key.revoked_at),
            )

    def revoke_key(self, key_id: str, ts: int) -> bool:
        with self._admin() as conn:
            conn.execute(
                "UPDATE agent_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (ts, key_id),
            )
            return conn.changes() > 0

    def agent_keys(self) -> list[AgentKey]:
        with self._read() as conn:
            rows = _all(
                conn,
                "SELECT id, name, pattern, hash, created_at, revoked_at FROM agent_keys "
                "ORDER BY created_at",
            )
        return [AgentKey(*r) for r in rows]

    def get_secret(self, name: str) -> str | None:
        with self._read() as conn:
            row = _one(conn, "SELECT value FROM secrets WHERE name = ?", (name,))
        return str(row[0]) if row else None

    def set_secret(self, name: str, value: str, ts: int) -> None:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO secrets VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                (name, value, ts),
            )

    def add_secret(self, name: str, value: str, ts: int) -> str:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO secrets VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, value, ts),
            )
            return str(_scalar(conn, "SELECT value FROM secrets WHERE name = ?", (name,)))

    def add_console_session(self, session: ConsoleSession, now_ms: int) -> None:
        with self._admin() as conn:
            conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now_ms,))
            conn.execute(
                "INSERT INTO console_sessions VALUES (?, ?, ?, ?)",
                (session.id_hash, session.csrf, session.credential, session.expires_at),
            )

    def get_console_session(self, id_hash: str, now_ms: int) -> ConsoleSession | None:
        with self._read() as conn:
            row = _one(
                conn,
                "SELECT id_hash, csrf, credential, expires_at FROM console_sessions "
                "WHERE id_hash = ? AND expires_at > ?",
                (id_hash, now_ms),
            )
        return ConsoleSession(*row) if row else None

    def delete_console_session(self, id_hash: str) -> None:
        with self._admin() as conn:
            conn.execute("DELETE FROM console_sessions WHERE id_hash = ?", (id_hash,))

    def console_sessions(self, now_ms: int) -> list[ConsoleSession]:
        with self._read() as conn:
            rows = _all(
                conn,
                "SELECT id_hash, csrf, credential, expires_at FROM console_sessions "
                "WHERE expires_at > ?",
                (now_ms,),
            )
        return [ConsoleSession(*r) for r in rows]

    # ---- reads (any thread) ----

    _REQUEST_COLS = (
        "id, kind, agent_id, session_id, key, status, created_at, expires_at, request, response, "
        "decided_by, decided_at, delivered_at, acknowledged_at, agent_response, event_cursor"
    )

    def list_requests(
        self, *, status: str | None, agent_id: str | None, kind: str | None, limit: int
    ) -> list[RequestRecord]:
        where, args = [], []
        for column, value in (("status", status), ("agent_id", agent_id), ("kind", kind)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as conn:
            rows = _all(
                conn,
                f"SELECT {self._REQUEST_COLS} FROM requests{clause} "
                "ORDER BY created_at DESC, id LIMIT ?",
                [*args, limit],
            )
        return [request_of(r) for r in rows]

    def open_requests(self) -> list[RequestRecord]:
        """Requests still pending, or decided but not yet acknowledged by the agent."""
        with self._read() as conn:
            rows = _all(
                conn,
                f"SELECT {self._REQUEST_COLS} FROM requests WHERE status = 'pending' "
                "OR (status = 'decided' AND acknowledged_at IS NULL) ORDER BY created_at",
            )
        return [request_of(r) for r in rows]

    def unobserved_events(self, event_types: Collection[str]) -> list[StoredEvent]:
        types = list(event_types)
        with self._read() as conn:
            rows = _all(
                conn,
                f"SELECT {self._EVENT_COLS} FROM events WHERE id > coalesce("
                "(SELECT value FROM meta WHERE name = 'observed_through'), 0) "
                f"AND event_type IN ({','.join('?' * len(types))}) ORDER BY id",
                types,
            )
        return [self._event(r) for r in rows]

    def get_request(self, request_id: str) -> RequestRecord | None:
        with self._read() as conn:
            row = _one(
                conn, f"SELECT {self._REQUEST_COLS} FROM requests WHERE id = ?", (request_id,)
            )
        return request_of(row) if row else None

    def audit(
        self, *, agent_id: str | None, request_id: str | None, limit: int
    ) -> list[AuditRecord]:
        where, args = [], []
        for column, value in (("agent_id", agent_id), ("request_id", request_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as conn:
            rows = _all(
                conn,
                "SELECT id, ts, actor, action, request_id, agent_id, detail FROM audit"
                f"{clause} ORDER BY id DESC LIMIT ?",
                [*args, limit],
            )
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows]

    def load_agents(self) -> list[AgentRecord]:
        uncounted = dict(self._uncounted)  # events committed, not yet in their agents' rows
        with self._read() as conn:
            rows = _all(
                conn,
                "SELECT id, name, model, template_id, capabilities, metadata, state, "
                "registered_at, last_seen, last_event_at, current_session_id, implicit, "
                "event_count, error_count FROM agents",
            )
        records = []
        for r in rows:
            n, errors, last = uncounted.get(r[0], (0, 0, r[9]))
            last_event_at = last if r[9] is None else max(r[9], last)
            records.append(
                AgentRecord(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    tuple(orjson.loads(r[4])),
                    orjson.loads(r[5]),
                    r[6],
                    r[7],
                    # The row's `last_seen` is written with state changes and disconnects, not
                    # per event: after a crash its newest event is later contact.
                    r[8] if last_event_at is None else max(r[8], last_event_at),
                    last_event_at,
                    r[10],
                    bool(r[11]),
                    r[12] + n,
                    r[13] + errors,
                )
            )
        return records

    def forgotten_events(self) -> int:
        uncounted = dict(self._uncounted)  # events committed, not yet in their agents' rows
        with self._read() as conn, conn:
            forgotten = int(
                _scalar(
                    conn,
                    "SELECT coalesce(max(value), 0) FROM meta WHERE name = 'forgotten_events'",
                )
            )
            rowless = _all(
                conn,
                f"SELECT value FROM {_ID_LIST} WHERE value NOT IN (SELECT id FROM agents)",
                (orjson.dumps(list(uncounted)).decode(),),
            )
        return forgotten + sum(uncounted[r[0]][0] for r in rowless)

    def usage_by_agent(self) -> dict[str, UsageTotals]:
        with self._read() as conn:
            rows = _all(conn, f"SELECT agent_id, {_USAGE_SUMS} FROM usage GROUP BY agent_id")
        return {r[0]: _totals(r) for r in rows}

    def producer_seq(self, producer_id: str) -> int:
        with self._read() as conn:
            row = _one(conn, "SELECT last_seq FROM producers WHERE id = ?", (producer_id,))
        return int(row[0]) if row else 0

    def prices(self) -> list[Price]:
        with self._read() as conn:
            return self._read_prices(conn)

    @staticmethod
    def _read_prices(conn: apsw.Connection) -> list[Price]:
        # `*`: (model, input_per_m, output_per_m, currency, updated_at), then the cache rates
        # of version 13, which a test's store stopped at an earlier version lacks.
        rows = _all(conn, "SELECT * FROM prices ORDER BY model")
        return [Price(r[0], r[1], r[2], r[3], *r[5:7]) for r in rows]

    _SESSION_COLS = (
        "id, agent_id, status, created_at, updated_at, ended_at, metadata, event_count, error_count"
    )

    @staticmethod
    def _session(r: tuple[Any, ...], pending: SessionCounts) -> SessionRecord:
        n, last, errors = pending.get(r[0], (0, r[4], 0))
        return SessionRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            max(r[4], last),
            r[5],
            orjson.loads(r[6]),
            r[7] + n,
            r[8] + errors,
        )

    def active_sessions_by_agent(self) -> dict[str, int]:
        with self._read() as conn:
            rows = _all(
                conn,
                "SELECT agent_id, count(*) FROM sessions WHERE status = 'active' GROUP BY agent_id",
                (),
            )
        return {str(r[0]): int(r[1]) for r in rows}

    @contextmanager
    def _sessions_read(self) -> Iterator[tuple[apsw.Connection, SessionCounts]]:
        """A read of sessions in one snapshot, with the counts its rows do not include yet."""
        with self._read() as conn:
            for _ in range(3):
                conn.execute("BEGIN")
                try:
                    mark = int(
                        _scalar(conn, "SELECT value FROM meta WHERE name = 'counted_through'")
                    )
                    pending = self._session_overlay(mark)
                    if pending is not None:
                        yield conn, pending
                        return
                finally:
                    conn.execute("COMMIT")
            raise StoreError("sessions' counts changed under three reads in a row")

    def _session_overlay(self, mark: int) -> SessionCounts | None:
        """What to add to rows that include every event up to `mark`; None if not known.

        Read after the snapshot began: postings that committed since are in the pending
        state but not in the rows it shows.
        """
        current_mark, current, previous_mark, previous = self._pending_sessions
        if mark > current_mark:  # postings committed; the writer has not let go of them yet
            return {}
        if mark == current_mark:
            return dict(current)
        if mark != previous_mark:  # two postings since the snapshot began
            return None
        merged = dict(previous)
        _add_session_counts(
            merged, [(s, n, last, errors) for s, (n, last, errors) in list(current.items())]
        )
        return merged

    def list_sessions(
        self,
        *,
        status: str | None,
        agent_id: str | None,
        limit: int,
        offset: int,
        outcome: str | None = None,
        connected: Collection[str] | None = None,
    ) -> tuple[list[SessionRecord], int]:
        if outcome is not None and outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        where: list[str] = []
        args: list[Any] = []
        if status in ("active", "suspended") and connected is not None:
            # Not ended, and its agent connected (active) or not (suspended: for now).
            if status == "active":
                where.append(f"status = 'active' AND agent_id IN {_ID_LIST}")
            else:
                where.append(
                    f"(status = 'suspended' OR status = 'active' AND agent_id NOT IN {_ID_LIST})"
                )
            args.append(orjson.dumps(list(connected)).decode())
        elif status:
            where.append("status = ?")
            args.append(status)
        if agent_id:
            where.append("agent_id = ?")
            args.append(agent_id)
        # An outcome depends on the errors too: the rows' for sessions without pending events.
        matching = [*where, f"({_OUTCOMES[outcome]})"] if outcome is not None else where
        order = "ORDER BY updated_at DESC, id"
        with self._sessions_read() as (conn, pending):
            if not pending:
                total = _scalar(conn, f"SELECT count(*) FROM sessions{_where_all(matching)}", args)
                rows = _all(
                    conn,
                    f"SELECT {self._SESSION_COLS} FROM sessions{_where_all(matching)} {order} "
                    "LIMIT ? OFFSET ?",
                    [*args, limit, offset],
                )
                return [self._session(r, pending) for r in rows], int(total)
            # Sessions with pending events may move up the order, and their pending errors
            # change their outcome: read them apart and filter them here, and the others down
            # to the page's end, then merge.
            ids = orjson.dumps(list(pending)).decode()
            others = _where_all([*matching, f"id NOT IN {_ID_LIST}"])
            total = _scalar(conn, f"SELECT count(*) FROM sessions{others}", [*args, ids])
            rows = _all(
                conn,
                f"SELECT {self._SESSION_COLS} FROM sessions{others} {order} LIMIT ?",
                [*args, ids, limit + offset],
            )
            apart = [
                self._session(r, pending)
                for r in _all(
                    conn,
                    f"SELECT {self._SESSION_COLS} FROM sessions"
                    f"{_where_all([*where, f'id IN {_ID_LIST}'])}",
                    [*args, ids],
                )
            ]
        if outcome is not None:
            apart = [r for r in apart if session_outcome(r.status, r.error_count) == outcome]
        records = [self._session(r, pending) for r in rows] + apart
        records.sort(key=lambda r: r.id)
        records.sort(key=lambda r: r.updated_at, reverse=True)
        return records[offset : offset + limit], int(total) + len(apart)

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._sessions_read() as (conn, pending):
            row = _one(
                conn, f"SELECT {self._SESSION_COLS} FROM sessions WHERE id = ?", (session_id,)
            )
        return self._session(row, pending) if row else None

    def session_usage(self, session_ids: list[str]) -> dict[str, UsageTotals]:
        if not session_ids:
            return {}
        marks = ",".join("?" * len(session_ids))
        with self._read() as conn:
            rows = _all(
                conn,
                f"SELECT session_id, {_USAGE_SUMS} FROM usage "
                f"WHERE session_id IN ({marks}) GROUP BY session_id",
                session_ids,
            )
        return {r[0]: _totals(r) for r in rows}

    @staticmethod
    def _where(flt: EventFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, values in (
            ("agent_id", flt.agent_ids),
            ("session_id", flt.session_ids),
            ("channel", flt.channels),
        ):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        # Types and severities are stored as sent, and match whatever their case, as the live
        # stream's filter does: a replay finds what the stream would have sent.
        types = sorted({t.lower() for t in flt.event_types or ()})
        if len(types) == 1 and types[0] in _RARE_SET:
            # The index of these types holds every row asked for, in id order. (Of several
            # types, SQLite would read each type's rows in the window, then sort them all:
            # slower than the scan by id it does without the index, which stops at the limit.)
            where += ["event_type = ? COLLATE NOCASE", _RARE]
            args += types
        elif types:
            where.append(f"lower(event_type) IN ({','.join('?' * len(types))})")
            args += types
        if flt.severities:
            where.append(f"lower(severity) IN ({','.join('?' * len(flt.severities))})")
            args.extend(v.lower() for v in flt.severities)
        if flt.start_ms is not None:
            where.append("ts >= ?")
            args.append(flt.start_ms)
        if flt.end_ms is not None:
            where.append("ts < ?")
            args.append(flt.end_ms)
        if flt.text:
            # Payloads are stored as orjson writes them: search for the text as it is written
            # there, so that quotes, backslashes and line breaks in it are found.
            try:
                written = orjson.dumps(flt.text)[1:-1].decode()
            except TypeError:  # a lone surrogate: no stored payload holds one
                written = flt.text
            escaped = written.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("CAST(payload AS TEXT) LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        return where, args

    _EVENT_COLS = "id, agent_id, session_id, channel, event_type, severity, ts, client_ts, payload"

    @staticmethod
    def _event(r: tuple[Any, ...]) -> StoredEvent:
        payload = r[8] if isinstance(r[8], bytes) else r[8].encode()
        return StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], payload)

    def events_before(self, flt: EventFilter, before: int | None, limit: int) -> list[StoredEvent]:
        return self._events(flt, 0, NO_ID if before is None else before, limit, newest_first=True)

    def events_after(self, flt: EventFilter, after: int, limit: int) -> list[StoredEvent]:
        return self._events(flt, after, NO_ID, limit, newest_first=False)

    def _events(
        self, flt: EventFilter, after: int, before: int, limit: int, *, newest_first: bool
    ) -> list[StoredEvent]:
        """Up to `limit` events of `flt` with after < id < before, newest or oldest first."""
        where, args = self._where(flt)
        keyed = self._keyed(flt)
        with self._read() as conn, conn:
            low, high = self._id_range(conn, flt.start_ms, flt.end_ms)
            low, high = max(low, after), min(high, before)
            if keyed is None:
                cond = " AND ".join([*where, "id > ? AND id < ?"])
                rows = _all(
                    conn,
                    f"SELECT {self._EVENT_COLS} FROM events WHERE {cond} "
                    f"ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?",
                    [*args, low, high, limit],
                )
            elif newest_first:
                rows = self._keyed_before(conn, keyed, where, args, high, limit)
            else:
                rows = self._keyed_after(conn, keyed, where, args, low, limit)
        return [self._event(r) for r in rows]

    def count_events(self, flt: EventFilter) -> int:
        where, args = self._where(flt)
        keyed = self._keyed(flt)
        with self._read() as conn, conn:
            low, high = self._id_range(conn, flt.start_ms, flt.end_ms)
            if keyed is not None:
                count = self._keyed_count(conn, keyed, where, args, low)
            else:
                cond = " AND ".join([*where, "id > ? AND id < ?"])
                count = int(
                    _scalar(conn, f"SELECT count(*) FROM events WHERE {cond}", [*args, low, high])
                )
        return count

    # ---- reads by agent or session: the postings, then the unposted tail ----

    @staticmethod
    def _keyed(flt: EventFilter) -> _Keyed | None:
        """The postings that narrow `flt` most: a session's, else an agent's; None: neither."""
        if flt.session_ids:
            return "session_postings", "session_id", flt.session_ids
        if flt.agent_ids:
            return "agent_postings", "agent_id", flt.agent_ids
        return None

    @staticmethod
    def _watermark(conn: apsw.Connection) -> int:
        """Every event up to this id is in the postings (read in the caller's transaction)."""
        return int(_scalar(conn, "SELECT value FROM meta WHERE name = 'posted_through'"))

    def _id_range(
        self, conn: apsw.Connection, start_ms: int | None, end_ms: int | None
    ) -> tuple[int, int]:
        """Ids `(low, high)` around every event received in [start_ms, end_ms): low < id < high.

        Found from the receive times of each posting's events (`posted_times`, a row per 2,000
        events or so), then the unposted events above the watermark, by id. Nothing assumes
        that the clock only moves forward: while it does, the bounds are at most a posting
        wider than the range; where it stepped back, wider still. The caller's `ts` conditions
        pick the events within them.
        """
        low, high = 0, NO_ID
        if start_ms is None and end_ms is None:
            return low, high
        watermark = self._watermark(conn)
        if start_ms is not None:
            # The postings before the first that reaches `start_ms` are older throughout.
            first = _one(
                conn,
                "SELECT last_id FROM posted_times WHERE max_ts >= ? ORDER BY last_id LIMIT 1",
                (start_ms,),
            )
            if first is not None:
                low = int(
                    _scalar(
                        conn,
                        "SELECT coalesce(max(last_id), 0) FROM posted_times WHERE last_id < ?",
                        first,
                    )
                )
            else:
                tail = _scalar(
                    conn,
                    "SELECT min(id) FROM events WHERE id > ? AND ts >= ?",
                    (watermark, start_ms),
                )
                low = NO_ID if tail is None else int(tail) - 1
        if end_ms is not None:
            last = _scalar(
                conn, "SELECT max(id) FROM events WHERE id > ? AND ts < ?", (watermark, end_ms)
            )
            if last is None:
                # The postings after the last that reaches below `end_ms` are newer throughout.
                row = _one(
                    conn,
                    "SELECT last_id FROM posted_times WHERE min_ts < ? "
                    "ORDER BY last_id DESC LIMIT 1",
                    (end_ms,),
                )
                last = 0 if row is None else row[0]
            high = int(last) + 1
        return low, high

    @staticmethod
    @contextmanager
    def _postings(
        conn: apsw.Connection,
        keyed: _Keyed,
        watermark: int,
        condition: str,
        bound: int,
    ) -> Iterator[list[apsw.Cursor]]:
        """One cursor per key over its postings up to `watermark` (those of a round under way
        are above it: its events are read from the tail) that meet `condition` (one `?`:
        `bound`)."""
        table, column, keys = keyed
        sql = (
            f"SELECT last_id, first_id, ids FROM {table} "
            f"WHERE {column} = ? AND last_id <= ? AND {condition}"
        )
        streams = [conn.execute(sql, (key, watermark, bound)) for key in keys]
        try:
            yield streams
        finally:
            for stream in streams:
                stream.close()

    def _keyed_count(
        self,
        conn: apsw.Connection,
        keyed: _Keyed,
        where: list[str],
        args: list[Any],
        after: int,
    ) -> int:
        table, column, keys = keyed
        cond = " AND ".join(where)
        watermark = self._watermark(conn)
        total = int(
            _scalar(
                conn,
                f"SELECT count(*) FROM events WHERE id > ? AND {cond}",
                [watermark, *args],
            )
        )
        if len(where) == 1:
            # Nothing but the key (`_where` makes one condition per filter given): the
            # postings' lengths are the counts.
            marks = ",".join("?" * len(keys))
            return total + int(
                _scalar(
                    conn,
                    f"SELECT coalesce(sum(length(ids)), 0) / 8 FROM {table} "
                    f"WHERE {column} IN ({marks}) AND last_id <= ?",
                    [*keys, watermark],
                )
            )
        with self._postings(
            conn, keyed, watermark, "last_id > ? ORDER BY last_id", after
        ) as streams:
            for ids in _postings.batched(_postings.oldest_first(streams, after), POSTING_COUNT):
                total += int(
                    _scalar(
                        conn,
                        f"SELECT count(*) FROM events WHERE id IN {_ID_LIST} AND {cond}",
                        [orjson.dumps(ids).decode(), *args],
                    )
                )
        return total

    def _rows_by_id(
        self,
        conn: apsw.Connection,
        runs: Iterable[list[int]],
        cond: str,
        args: list[Any],
        order: str,
        limit: int,
    ) -> list[Row]:
        """Up to `limit` events of the ids in `runs` that meet `cond`, in id `order` (the runs')."""
        found: list[Row] = []
        for ids in _postings.batched(runs, POSTING_READ):
            found += _all(
                conn,
                f"SELECT {self._EVENT_COLS} FROM events WHERE id IN {_ID_LIST} AND {cond} "
                f"ORDER BY id {order} LIMIT ?",
                [orjson.dumps(ids).decode(), *args, limit - len(found)],
            )
            if len(found) >= limit:
                break
        return found

    def _keyed_before(
        self,
        conn: apsw.Connection,
        keyed: _Keyed,
        where: list[str],
        args: list[Any],
        bound: int,
        limit: int,
    ) -> list[Row]:
        cond = " AND ".join(where)
        watermark = self._watermark(conn)
        found = _all(
            conn,
            f"SELECT {self._EVENT_COLS} FROM events WHERE id > ? AND id < ? AND {cond} "
            "ORDER BY id DESC LIMIT ?",
            [watermark, bound, *args, limit],
        )
        if len(found) >= limit:
            return found
        with self._postings(
            conn, keyed, watermark, "first_id < ? ORDER BY last_id DESC", bound
        ) as streams:
            runs = _postings.newest_first(streams, bound)
            return found + self._rows_by_id(conn, runs, cond, args, "DESC", limit - len(found))

    def _keyed_after(
        self,
        conn: apsw.Connection,
        keyed: _Keyed,
        where: list[str],
        args: list[Any],
        after: int,
        limit: int,
    ) -> list[Row]:
        cond = " AND ".join(where)
        watermark = self._watermark(conn)
        with self._postings(
            conn, keyed, watermark, "last_id > ? ORDER BY last_id", after
        ) as streams:
            runs = _postings.oldest_first(streams, after)
            found = self._rows_by_id(conn, runs, cond, args, "ASC", limit)
        if len(found) >= limit:
            return found
        return found + _all(
            conn,
            f"SELECT {self._EVENT_COLS} FROM events WHERE id > ? AND {cond} ORDER BY id LIMIT ?",
            [max(after, watermark), *args, limit - len(found)],
        )

    def event_counts_by_type(self, start_ms: int, end_ms: int) -> dict[str, int]:
        with self._read() as conn, conn:
            low, high = self._id_range(conn, start_ms, end_ms)
            rows = _all(
                conn,
                "SELECT event_type, count(*) FROM events "
                "WHERE id > ? AND id < ? AND ts >= ? AND ts < ? GROUP BY event_type",
                (low, high, start_ms, end_ms),
            )
        return {r[0]: int(r[1]) for r in rows}

    def usage_of_events(self, first_id: int, last_id: int) -> list[tuple[int, str, Usage]]:
        with self._read() as conn:
            rows = _all(conn, USAGE_OF_EVENTS.replace("%s", "?"), (first_id, last_id))
        return [usage_of(row) for row in rows]

    def usage_rows(self, query: UsageQuery) -> list[UsageRow]:
        where = ["ts >= ?", "ts < ?"]
        args: list[Any] = [query.start_ms, query.end_ms]
        for column, value in (
            ("agent_id", query.agent_id),
            ("session_id", query.session_id),
            ("model", query.model),
        ):
            if value == "" and column == "model":  # the usage that names no model
                where.append("model IS NULL")
            elif value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.bucket_ms:
            key = f"(ts / {int(query.bucket_ms)}) * {int(query.bucket_ms)}"
        elif query.group_by in ("model", "agent", "session"):
            key = {"model": "model", "agent": "agent_id", "session": "session_id"}[query.group_by]
        else:
            key = "NULL"
        with self._read() as conn:
            rows = _all(
                conn,
                f"SELECT {key} AS k, {_USAGE_SUMS} "
                f"FROM usage WHERE {' AND '.join(where)} GROUP BY k ORDER BY k",
                args,
            )
        return [UsageRow(*r) for r in rows]
