"""The PostgreSQL store: one writer connection holding an advisory lock, a small reader pool.

Most of the SQLite store's tricks (postings, counts pending in memory) work around an
embedded engine; here plain tables with B-tree indexes do, and every count is written in the
commit of its events: one aggregated `UPDATE` for the agents and one for the sessions. One is
kept: reads by time turn the range into ids first, from the receive times of each block of
ids (`event_spans`), since the planner walked the whole primary key for a time range instead.
Events go in with binary `COPY`, the other writes of a commit in one pipeline, so a commit
costs a handful of round trips whatever its size.

Every table lives in one schema (`schema`, else the connection's own), and one Studio writes
to it: the writer takes a session-level advisory lock keyed by the schema's OID, so Studios on
other schemas of the same database do not get in each other's way. Text columns use the "C"
collation: ids sort byte-wise and `lower()` folds ASCII only, as SQLite does.

A lost connection (the server restarted, a failover, `pg_terminate_backend`) is no bad value:
`write` raises StoreUnavailable, and the next `write` connects again, takes the lock again
(refusing to write if another Studio took it meanwhile) and rereads what the writer keeps in
memory. A read whose pooled connection turns out broken is retried once on a new one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from ..errors import DatabaseInUse, MigrationError, StoreError, StoreUnavailable
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
)
from ..pricing import DEFAULT_PRICES, PriceTable
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
from ._rows import USAGE_OF_EVENTS, request_of, request_row, usage_of

log = logging.getLogger(__name__)

# Event ids per row of `event_spans`: the ids `block * SPAN_IDS` to `(block + 1) * SPAN_IDS - 1`
# and the lowest and highest receive time among their events. About 500 rows per 1,000,000
# events, read whole by a read with a time range; the events at a range's edges that a block
# holds but the range does not are scanned and left out by their `ts`.
SPAN_IDS = 2048

# Versioned migrations: index + 1 is the schema version, kept in `meta` ('schema_version').
# Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        name text COLLATE "C" PRIMARY KEY,
        value bigint NOT NULL
    );
    INSERT INTO meta VALUES ('forgotten_events', 0), ('observed_through', 0);
    CREATE TABLE agents (
        id text COLLATE "C" PRIMARY KEY,
        name text COLLATE "C",
        model text COLLATE "C",
        template_id text COLLATE "C",
        capabilities text NOT NULL DEFAULT '[]',
        metadata text NOT NULL DEFAULT '{}',
        state text COLLATE "C" NOT NULL DEFAULT 'ready',
        registered_at bigint NOT NULL,
        last_seen bigint NOT NULL,
        last_event_at bigint,
        current_session_id text COLLATE "C",
        implicit boolean NOT NULL DEFAULT false,
        event_count bigint NOT NULL DEFAULT 0,
        error_count bigint NOT NULL DEFAULT 0,
        -- The order agents are listed in: their first creation (SQLite's rowid order).
        seq bigint GENERATED ALWAYS AS IDENTITY
    );
    CREATE TABLE sessions (
        id text COLLATE "C" PRIMARY KEY,
        agent_id text COLLATE "C" NOT NULL,
        status text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        ended_at bigint,
        metadata text NOT NULL DEFAULT '{}',
        event_count bigint NOT NULL DEFAULT 0,
        error_count bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_update ON sessions (updated_at DESC, id);
    CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at DESC, id);
    CREATE TABLE events (
        id bigint PRIMARY KEY,
        agent_id text COLLATE "C" NOT NULL,
        session_id text COLLATE "C",
        channel text COLLATE "C" NOT NULL,
        event_type text COLLATE "C" NOT NULL,
        severity text COLLATE "C",
        ts bigint NOT NULL,
        client_ts bigint,
        payload text COLLATE "C" NOT NULL
    );
    CREATE INDEX events_by_agent ON events (agent_id, id);
    CREATE INDEX events_by_session ON events (session_id, id);
    CREATE INDEX events_by_ts ON events (ts);
    CREATE TABLE usage (
        event_id bigint PRIMARY KEY,
        agent_id text COLLATE "C" NOT NULL,
        session_id text COLLATE "C",
        model text COLLATE "C",
        ts bigint NOT NULL,
        input bigint NOT NULL,
        output bigint NOT NULL,
        cache_read bigint NOT NULL DEFAULT 0,
        cache_creation bigint NOT NULL DEFAULT 0,
        reasoning bigint NOT NULL DEFAULT 0,
        cost double precision
    );
    CREATE INDEX usage_by_ts ON usage (ts);
    CREATE INDEX usage_by_agent ON usage (agent_id, ts);
    CREATE INDEX usage_by_session ON usage (session_id);
    CREATE TABLE prices (
        model text COLLATE "C" PRIMARY KEY,
        input_per_m double precision NOT NULL,
        output_per_m double precision NOT NULL,
        currency text COLLATE "C" NOT NULL,
        updated_at bigint NOT NULL,
        cache_read_per_m double precision,
        cache_write_per_m double precision
    );
    CREATE TABLE producers (
        id text COLLATE "C" PRIMARY KEY,
        last_seq bigint NOT NULL
    );
    CREATE TABLE requests (
        id text COLLATE "C" PRIMARY KEY,
        kind text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        session_id text COLLATE "C",
        key text COLLATE "C" NOT NULL,
        status text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint,
        request text NOT NULL,
        response text,
        decided_by text COLLATE "C",
        decided_at bigint,
        delivered_at bigint,
        acknowledged_at bigint,
        agent_response text,
        event_cursor bigint
    );
    CREATE INDEX requests_by_status ON requests (status, created_at);
    CREATE INDEX requests_by_agent ON requests (agent_id, created_at);
    CREATE TABLE audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts bigint NOT NULL,
        actor text COLLATE "C" NOT NULL,
        action text COLLATE "C" NOT NULL,
        request_id text COLLATE "C",
        agent_id text COLLATE "C",
        detail text NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_by_request ON audit (request_id);
    CREATE INDEX audit_by_agent ON audit (agent_id, id);
    CREATE TABLE agent_keys (
        id text COLLATE "C" PRIMARY KEY,
        name text COLLATE "C" NOT NULL,
        pattern text COLLATE "C" NOT NULL,
        hash text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        revoked_at bigint
    );
    CREATE TABLE secrets (
        name text COLLATE "C" PRIMARY KEY,
        value text NOT NULL,
        updated_at bigint NOT NULL
    );
    """,
    # 2: the receive times of each block of SPAN_IDS event ids, in place of the index on `ts`
    # (see `_id_range`).
    f"""
    CREATE TABLE event_spans (
        block bigint PRIMARY KEY,
        min_ts bigint NOT NULL,
        max_ts bigint NOT NULL
    );
    INSERT INTO event_spans SELECT id / {SPAN_IDS}, min(ts), max(ts) FROM events GROUP BY 1;
    DROP INDEX events_by_ts;
    """,
    # 3: the console's login sessions, named by the SHA-256 of their ids (see SQLite's 15),
    # so that every Studio of a cluster takes a browser logged in on any of them.
    """
    CREATE TABLE console_sessions (
        id_hash text COLLATE "C" PRIMARY KEY,
        csrf text NOT NULL,
        credential text COLLATE "C" NOT NULL,
        expires_at bigint NOT NULL
    );
    """,
)

# A walk through the ids (`PostgresStore._walk`): its first window's width, and how much wider
# each next one is.
FIRST_WINDOW = 4096
WINDOW_GROWTH = 4

# Event ids reserved ahead of use (see Store.reserve_event_ids), as the SQLite store does.
ID_BLOCK = 1_000_000

# The advisory lock of a schema's writer: this prefix ('ASTR') in the high 32 bits, the
# schema's OID in the low ones. `pg_locks` shows them as `classid` and `objid`. The Studios of
# a cluster hold it shared, a Studio alone exclusively. The next prefix is the lock the
# Studios of a cluster migrate under, one at a time.
LOCK_PREFIX = 0x41535452

# Reader connections kept at most, and how long a read waits for one to be free.
READERS = 8
READER_WAIT_S = 30.0
CONNECT_TIMEOUT_S = 10
# Connections made once the store is open (a writer's reconnect, new readers) wait less: the
# pipeline retries a write the database cannot take, and a health check must answer.
RECONNECT_TIMEOUT_S = 3

# SQLSTATEs of a failure that says nothing about the statement: the server is shutting down
# or starting (57P01-57P03), or this is a standby now (25006, after a failover). With any
# class 08 (connection exception) or a broken connection, the same write may succeed later.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "25006"})

_INT64_MAX = (1 << 63) - 1


def _bounded_sum(column: str) -> str:
    """A sum of integers that saturates at 64 bits, as SQLite's `CAST(total(x) AS INTEGER)`."""
    return f"least(sum({column}), {_INT64_MAX})::bigint"


# Sums of a group of usage rows, in UsageTotals/UsageRow order after the key.
_USAGE_SUMS = ", ".join(
    [
        _bounded_sum("input"),
        _bounded_sum("output"),
        "coalesce(sum(cost), 0)::float8",
        _bounded_sum(
            "CASE WHEN cost IS NULL THEN input::numeric + output + cache_read + cache_creation "
            "ELSE 0 END"
        ),
        "count(*)",
        _bounded_sum("cache_read"),
        _bounded_sum("cache_creation"),
        _bounded_sum("reasoning"),
    ]
)

# A session's trace status (`session_outcome`) as a condition on its row.
_OUTCOMES = {
    "running": "status = 'active'",
    "ok": "status = 'completed' AND error_count = 0",
    "error": "status <> 'active' AND (status <> 'completed' OR error_count > 0)",
}

_EVENT_COLS = "id, agent_id, session_id, channel, event_type, severity, ts, client_ts, payload"
_EVENT_TYPES = ("bigint", "text", "text", "text", "text", "text", "bigint", "bigint", "text")
_USAGE_COLS = (
    "event_id, agent_id, session_id, model, ts, input, output, cache_read, cache_creation, "
    "reasoning, cost"
)
_USAGE_TYPES = ("bigint", "text", "text", "text", *["bigint"] * 6, "float8")
_SESSION_COLS = (
    "id, agent_id, status, created_at, updated_at, ended_at, metadata, event_count, error_count"
)
_REQUEST_COLS = (
    "id, kind, agent_id, session_id, key, status, created_at, expires_at, request, response, "
    "decided_by, decided_at, delivered_at, acknowledged_at, agent_response, event_cursor"
)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# The writer's application name: another Studio refused the lock reads the holder's pid in it.
# The readers' say what they are too, for whoever looks at `pg_stat_activity`.
_APP_NAME = "aster-studio pid {pid}"
_READER_APP_NAME = "aster-studio pid {pid} reader"
_APP_PID = re.compile(r"^aster-studio pid (\d+)$")

# Queries return plain tuples, typed loosely: each caller builds its typed record from them.
Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]
Query = str | sql.Composed
T = TypeVar("T")


def _is_unavailable(exc: BaseException, conn: Conn) -> bool:
    """Whether `exc`, raised by work on `conn`, is the database's absence, not the work's fault.

    Not every OperationalError: a serialization failure, a full disk or an aborted pipeline
    (whose cause is a bad value) are of that class too.
    """
    if conn.closed or conn.broken:
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # raised by the client: the connection failed under it
        return isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, psycopg.errors.PipelineAborted
        )
    return state.startswith("08") or state in _UNAVAILABLE_STATES


def describe_dsn(dsn: str) -> str:
    """`postgresql://user@host:port/db` of a libpq URL or key/value string: never a password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(an unreadable connection string)"
    user = params.get("user")
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    port = params.get("port") or 5432
    dbname = params.get("dbname") or user or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{dbname}"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_NUL = "\x00"


def _no_nul(value: Any) -> Any:
    """`value`, a string's NUL characters replaced by U+FFFD: PostgreSQL's text cannot hold
    NUL, and one in an id or a type failed the whole commit (each retry, then the op alone,
    and a reliable producer's resends for ever). Payloads never hold one: JSON escapes it."""
    return value.replace(_NUL, "\ufffd") if type(value) is str and _NUL in value else value


def _event_row(e: StoredEvent) -> tuple[Any, ...]:
    """An event's row for COPY, its text columns without NUL (`_no_nul`)."""
    payload = _payload_text(e.payload)
    if (
        _NUL in e.agent_id
        or _NUL in e.channel
        or _NUL in e.event_type
        or (e.session_id is not None and _NUL in e.session_id)
        or (e.severity is not None and _NUL in e.severity)
    ):
        return (e.id, *map(_no_nul, e[1:6]), e.ts, e.client_ts, payload)
    return (*e[:8], payload)


def _payload_text(payload: object) -> str:
    """An event's payload (JSON bytes as received) as the text stored."""
    if isinstance(payload, bytes):
        return payload.decode()
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload).decode()
    if isinstance(payload, str):
        return payload
    raise TypeError(f"an event's payload must be JSON bytes, not {type(payload).__name__}")


def _limit(n: int) -> int | None:
    """A LIMIT as SQLite reads it: a negative one is none (PostgreSQL refuses it)."""
    return n if n >= 0 else None


def _with_bounds(
    where: Sequence[str], args: Sequence[Any], low: int | None, high: int | None
) -> tuple[list[str], list[Any]]:
    """`where` and `args` with low < id < high added (None: no bound that side)."""
    cond, cond_args = list(where), list(args)
    if low is not None:
        cond.append("id > %s")
        cond_args.append(low)
    if high is not None:
        cond.append("id < %s")
        cond_args.append(high)
    return cond, cond_args


def _where_all(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _totals(row: Row) -> UsageTotals:
    """The UsageTotals of a row of a key and the `_USAGE_SUMS`."""
    return UsageTotals(row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


class _Pool:
    """Reader connections: made as needed up to `size`, each lent to one thread at a time.

    A connection that comes back broken (the server restarted, say) is dropped, and the next
    read makes a new one; a `fresh` one drops the idle ones first, which were likely cut off
    too. `close` closes the idle ones at once and the lent ones as they come back: closing a
    connection under a running query would break it mid-flight.
    """

    def __init__(self, connect: Callable[[], Conn], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Conn] = []
        self._made = 0
        self._closed = False
        self._cond = threading.Condition()

    @contextmanager
    def connection(self, *, fresh: bool = False) -> Iterator[Conn]:
        conn = self._take(fresh)
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _take(self, fresh: bool) -> Conn:
        deadline = time.monotonic() + READER_WAIT_S
        stale: list[Conn] = []
        with self._cond:
            if fresh:
                stale, self._idle = self._idle, []
                self._made -= len(stale)
            while True:
                if self._closed:
                    raise StoreError("store is not open")
                if self._idle:
                    return self._idle.pop()
                if self._made < self._size:
                    self._made += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"no database connection free within {READER_WAIT_S:.0f} s")
                self._cond.wait(left)
        for conn in stale:
            conn.close()
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def _give_back(self, conn: Conn) -> None:
        broken = conn.closed or conn.info.transaction_status != TransactionStatus.IDLE
        with self._cond:
            keep = not (self._closed or broken)
            if keep:
                self._idle.append(conn)
            else:
                self._made -= 1
            self._cond.notify()
        if not keep:
            conn.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._made -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()


def _is_stored_already(exc: BaseException) -> bool:
    """Whether a write failed as `_mark_shared` fails a commit of messages stored already."""
    return isinstance(exc, psycopg.errors.DivisionByZero)


def _without(ops: list[WriteOp], marks: list[MarkProducer]) -> list[WriteOp]:
    """`ops` without the events and usage of the units `marks` end. Their marks stay (the
    messages are durable, and acknowledged as such), as marks of units with nothing else."""
    dropped: set[int] = set()
    ends: dict[int, MarkProducer] = {}
    for mark in marks:
        end = ops.index(mark)
        dropped.update(range(end - mark.ops, end))
        ends[end] = dataclasses.replace(mark, ops=0)
    return [
        ends.get(i, op)
        for i, op in enumerate(ops)
        if i not in dropped or type(op) not in (StoredEvent, RecordUsage)
    ]


class PostgresStore:
    """Store events and state in a PostgreSQL schema; see the Store protocol for the contract."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        readers: int = READERS,
        shared: bool = False,
    ) -> None:
        self.dsn = dsn
        self.schema = schema  # None: the connection's own (`current_schema()`), found at open
        # One of a cluster's Studios: the writer lock is shared, and each commit numbers its
        # events itself (`_number`), so that ids follow the order of the commits of them all.
        self.shared = shared
        # A write of a shared store whose connection was lost as it committed: (its
        # transaction's id, what it made durable if it did). The next write asks the server.
        self._doubt: tuple[int, CommitResult] | None = None
        self._prices_version = -1
        self._readers_max = readers
        self._writer: Conn | None = None
        self._readers: _Pool | None = None
        self._lock_key: int | None = None  # the advisory lock the writer holds
        self._writer_key = 0  # the writer's lock, taken at open, taken again at a reconnect
        self._schema_id = 0  # the schema's OID, found at open
        # The writer's connection was lost: the next write connects again (None: it was not).
        self._lost_at: float | None = None
        self._lost_reason = ""
        self._refusal_logged = ""  # the last "another writer holds the lock" logged
        # A write failed with its connection: it may have committed (its COMMIT sent, the
        # reply lost). The next write of events checks whether they are stored already.
        self._in_doubt = False
        self._id_ceiling = 0  # ids up to this are reserved durably; 0: this instance numbers none
        self._prices = PriceTable(())
        self.store_id = ""  # this database's own id, set at `open`

    # ---- lifecycle ----

    def describe(self) -> str:
        return f"{describe_dsn(self.dsn)} (schema {self.schema or 'public'})"

    def _connect(self, *, writer: bool = False, timeout: int = CONNECT_TIMEOUT_S) -> Conn:
        """A new autocommit connection, its search path on the store's schema (if known).

        Raises StoreUnavailable if the server cannot be reached or refuses the connection.
        """
        extra: dict[str, Any] = {}
        try:
            if "connect_timeout" not in conninfo_to_dict(self.dsn):
                extra["connect_timeout"] = timeout
        except psycopg.Error as exc:
            raise StoreError(f"bad PostgreSQL connection string: {exc}") from exc
        extra["application_name"] = (_APP_NAME if writer else _READER_APP_NAME).format(
            pid=os.getpid()
        )
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {self.describe()}: {exc}") from exc
        try:
            if self.schema is not None:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            # REPEATABLE READ for the transactions of reads that take several queries. The
            # writers of a cluster commit in turns (`_number`): each must see the rows the one
            # before it committed (the id counter, the counts) instead of failing on them.
            shared_writer = writer and self.shared
            conn.isolation_level = (
                psycopg.IsolationLevel.READ_COMMITTED
                if shared_writer
                else psycopg.IsolationLevel.REPEATABLE_READ
            )
            if not writer:
                # Readers plan each query for its own values: a plan psycopg prepared and the
                # server cached while the tables were small (a filter on the primary key) kept
                # being used on a million events, 46 ms a query instead of 0.5 (/traces: 1.5 to
                # 6 s), until a restart. The filters' values change too much to gain from it.
                conn.prepare_threshold = None
        except psycopg.Error as exc:
            unavailable = _is_unavailable(exc, conn)
            conn.close()
            message = f"cannot set up a connection to {self.describe()}: {exc}"
            raise (StoreUnavailable if unavailable else StoreError)(message) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _reader(self) -> Conn:
        return self._connect(timeout=RECONNECT_TIMEOUT_S)

    def open(self) -> None:
        """Create the schema if needed, take the writer lock, migrate, and load prices.

        Raises DatabaseInUse while another Studio writes to the schema, MigrationError if its
        schema version is newer than this release's.
        """
        if self._writer is not None:
            return
        conn = self._connect(writer=True)
        self._writer = conn  # closed by `close` if what follows fails
        try:
            oid = self._schema_oid(conn, create=True)
            assert oid is not None  # made above
            self._acquire(conn, oid)
            self._schema_id = oid
            self._writer_key = self._lock_key or 0
            if self.shared:
                # The cluster's Studios migrate one at a time, and number events past every
                # id handed out (`_number`), a Studio's alone before included.
                migrating = (LOCK_PREFIX + 1 << 32) | oid
                conn.execute("SELECT pg_advisory_lock(%s)", (migrating,))
                try:
                    self._migrate(conn)
                    conn.execute(
                        "INSERT INTO meta SELECT 'id_ceiling', coalesce(max(id), 0) FROM events "
                        "ON CONFLICT (name) DO UPDATE "
                        "SET value = greatest(meta.value, excluded.value)"
                    )
                    conn.execute(
                        "INSERT INTO meta VALUES ('prices_version', 0) "
                        "ON CONFLICT (name) DO NOTHING"
                    )
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (migrating,))
            else:
                self._migrate(conn)
            self._readers = _Pool(self._reader, self._readers_max)
            self._prices = PriceTable(self._read_prices(conn))
            self.store_id = self._identity(conn)
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot open {self.describe()}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _schema_oid(self, conn: Conn, *, create: bool) -> int | None:
        """The OID of the store's schema (created first if `create`); None if there is none.

        With no schema given, the connection's current one becomes the store's, and the
        connection's search path is pinned to it, as every later connection's is.
        """
        if self.schema is None:
            row = conn.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise StoreError(
                    f"{describe_dsn(self.dsn)} has no schema to keep tables in: its search "
                    "path names none that exists; give one"
                )
            self.schema = str(row[0])
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        row = conn.execute(
            "SELECT oid::bigint FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        log.info("creating schema %s in %s", self.schema, describe_dsn(self.dsn))
        # UniqueViolation: another process created it meanwhile.
        with suppress(psycopg.errors.UniqueViolation):
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        row = conn.execute(
            "SELECT oid::bigint FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _acquire(self, conn: Conn, oid: int) -> None:
        """Take the schema's writer lock, or raise DatabaseInUse naming its holder."""
        key = (LOCK_PREFIX << 32) | oid
        row = conn.execute(self._try_lock, (key,)).fetchone()
        if row is None or not row[0]:
            raise DatabaseInUse(self._in_use(conn, oid))
        self._lock_key = key

    @property
    def _try_lock(self) -> str:
        shared = "_shared" if self.shared else ""
        return f"SELECT pg_try_advisory_lock{shared}(%s)"

    def _in_use(self, conn: Conn, oid: int) -> str:
        return (
            f"database {self.describe()} is in use by "
            + ("an Aster Studio outside the cluster" if self.shared else "another Aster Studio")
            + f"{self._holder(conn, oid)}: stop it, or give this one a database or schema of "
            "its own" + ("" if self.shared else ", or run each Studio on it with --cluster")
        )

    @staticmethod
    def _holder(conn: Conn, oid: int) -> str:
        """` (pid N, connected from H)` of the Studio holding the lock of schema `oid`, if
        it can be told; else ``."""
        holder = conn.execute(
            "SELECT a.application_name, host(a.client_addr) FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LOCK_PREFIX, oid),
        ).fetchone()
        by = ""
        if holder is not None:
            match = _APP_PID.match(holder[0] or "")
            if match:
                by = f" (pid {match[1]}" + (f", connected from {holder[1]})" if holder[1] else ")")
        return by

    def _release_lock(self, conn: Conn) -> None:
        if self._lock_key is not None:
            key, self._lock_key = self._lock_key, None
            if not conn.closed:
                try:
                    shared = "_shared" if self.shared else ""
                    conn.execute(f"SELECT pg_advisory_unlock{shared}(%s)", (key,))
                except psycopg.Error:  # the connection's end releases it anyway
                    log.debug("advisory unlock failed", exc_info=True)

    def check_startable(self) -> None:
        """Raise what `open` would for the likeliest reasons a server cannot start: another
        Studio holds the schema (DatabaseInUse), or its schema version is newer than this
        release (MigrationError). Nothing is created, and nothing stays open."""
        conn = self._connect(writer=True)
        try:
            oid = self._schema_oid(conn, create=False)
            if oid is None:  # a first start: `open` creates it
                return
            self._acquire(conn, oid)
            try:
                self._check_version(self._schema_version(conn))
            finally:
                self._release_lock(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot check {self.describe()}: {exc}") from exc
        finally:
            conn.close()

    def open_beside_studio(self) -> None:
        """Open for the command line's administrative reads and writes (agent keys, the
        console token) while a running Studio holds the schema (`open` raised
        DatabaseInUse): reader connections only; the schema must be this release's."""
        conn = self._connect()
        try:
            oid = self._schema_oid(conn, create=False)
            version = 0 if oid is None else self._schema_version(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open {self.describe()}: {exc}") from exc
        finally:
            conn.close()
        if version != len(MIGRATIONS):
            raise StoreError(
                f"database {self.describe()} is in use by a Studio of another release (schema "
                f"version {version}, this release's {len(MIGRATIONS)}): stop it first"
            )
        if self._readers is None:
            self._readers = _Pool(self._reader, self._readers_max)

    def close(self) -> None:
        """Release the writer lock and close every connection; idempotent."""
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            self._release_lock(writer)
            writer.close()
        self._lock_key = None
        self._id_ceiling = 0
        self._lost_at = None
        self._in_doubt = False
        self._doubt = None

    @staticmethod
    def _schema_version(conn: Conn) -> int:
        """The schema's version as it is, neither created nor migrated (0: no tables yet)."""
        row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return 0 if row is None else int(row[0])

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise MigrationError(
                f"database {self.describe()} has schema version {version}, newer than this "
                f"release ({len(MIGRATIONS)}); upgrade aster-studio"
            )

    def _migrate(self, conn: Conn) -> None:
        current = self._schema_version(conn)
        self._check_version(current)
        latest = len(MIGRATIONS)
        if current == 0:
            log.info("creating tables in %s (schema version %s)", self.describe(), latest)
        elif current < latest:
            log.info("migrating %s from schema version %s to %s", self.describe(), current, latest)
        for version in range(current + 1, latest + 1):
            try:
                with conn.transaction():
                    conn.execute(MIGRATIONS[version - 1])
                    if version == 1:
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO prices VALUES (%s, %s, %s, %s, 0) "
                                "ON CONFLICT (model) DO NOTHING",
                                [
                                    (p.model, p.input_per_m, p.output_per_m, p.currency)
                                    for p in DEFAULT_PRICES
                                ],
                            )
                    conn.execute(
                        "INSERT INTO meta VALUES ('schema_version', %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (version,),
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"migration {version} failed: {exc}") from exc

    @staticmethod
    def _identity(conn: Conn) -> str:
        """The database's id, made at its first open (see SqliteStore._identity)."""
        conn.execute(
            "INSERT INTO meta VALUES ('store_id', %s) ON CONFLICT (name) DO NOTHING",
            (secrets.randbits(62) or 1,),
        )
        row = conn.execute("SELECT value FROM meta WHERE name = 'store_id'").fetchone()
        if row is None:
            raise StoreError("no store id after writing it")
        return f"{int(row[0]):016x}"

    def ping(self) -> None:
        """Raise StoreUnavailable if the database cannot be read, or the writer lost its
        connection and has not got it back (see `write`)."""
        self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        lost_at = self._lost_at
        if lost_at is not None:
            raise StoreUnavailable(
                f"the writer lost its connection to {self.describe()} at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(lost_at))}Z and has not "
                f"got it back: {self._lost_reason}"
            )

    def _read(self, work: Callable[[Conn], T], *, snapshot: bool = False) -> T:
        """`work` on a reader connection (`snapshot`: in one REPEATABLE READ transaction).

        A pooled connection may have been cut off since its last use (a restarted server):
        if `work` fails because its connection broke, it runs once more on a new one.
        """
        readers = self._readers
        if readers is None:
            raise StoreError("store is not open")
        for attempt in range(2):
            with readers.connection(fresh=attempt > 0) as conn:
                try:
                    if snapshot:
                        with conn.transaction():
                            return work(conn)
                    return work(conn)
                except psycopg.Error as exc:
                    if not _is_unavailable(exc, conn):
                        raise StoreError(f"read failed: {exc}") from exc
                    if attempt or not (conn.closed or conn.broken):
                        raise StoreUnavailable(
                            f"read failed, {self.describe()} cannot be reached: {exc}"
                        ) from exc
                    log.info("a reader connection was cut off (%s); reading on a new one", exc)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _all(self, query: Query, args: Sequence[Any] = ()) -> list[Row]:
        return self._read(lambda conn: conn.execute(query, args).fetchall())

    def _one(self, query: Query, args: Sequence[Any] = ()) -> Row | None:
        return self._read(lambda conn: conn.execute(query, args).fetchone())

    # ---- writes (writer thread only) ----

    def _require_writer(self) -> Conn:
        if self._writer is not None:
            return self._writer
        if self._lost_at is None:
            raise StoreError("store is not open")
        return self._reconnect()

    def _lose_writer(self, exc: BaseException) -> None:
        """Drop the writer's connection after `exc` cut it off: the next write connects again."""
        conn, self._writer = self._writer, None
        self._lock_key = None  # gone with the session
        if conn is not None:
            conn.close()
        if self._lost_at is None:
            self._lost_at = time.time()
            log.warning("the writer lost its connection to %s: %s", self.describe(), exc)
        self._lost_reason = str(exc).strip() or type(exc).__name__

    def _reconnect(self) -> Conn:
        """Connect the writer again after its connection was lost: take the schema's lock
        again (it went with the session) and reread what the writer keeps in memory, since
        the write that failed was rolled back (or, its reply lost, committed).

        Raises StoreUnavailable if the database cannot be reached yet, or if another Studio
        took the lock meanwhile: two writers would hand out the same event ids.
        """
        try:
            conn = self._connect(writer=True, timeout=RECONNECT_TIMEOUT_S)
        except StoreUnavailable as exc:
            self._lost_reason = str(exc)
            raise
        try:
            row = conn.execute(self._try_lock, (self._writer_key,)).fetchone()
            if row is None or not row[0]:
                message = (
                    f"the writer's connection to {self.describe()} was lost, and another "
                    f"Aster Studio{self._holder(conn, self._schema_id)} holds the schema's "
                    "writer lock now: not writing while it does (stop one of them)"
                )
                if message != self._refusal_logged:
                    self._refusal_logged = message
                    log.error("%s", message)
                self._lost_reason = message
                raise StoreUnavailable(message)
            self._lock_key = self._writer_key
            self._prices = PriceTable(self._read_prices(conn))
            if self._id_ceiling:
                self._id_ceiling = self._read_ceiling(conn)
        except psycopg.Error as exc:
            conn.close()
            self._lost_reason = str(exc)
            raise StoreUnavailable(
                f"cannot take the writer's lock on {self.describe()} again: {exc}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        log.warning(
            "the writer is connected to %s again, after %.1f s",
            self.describe(),
            time.time() - (self._lost_at or time.time()),
        )
        self._writer = conn
        self._lost_at = None
        self._refusal_logged = ""
        return conn

    def reserve_event_ids(self) -> int:
        if self.shared:
            # Its ids are the commits' (`_number`): those of the loop are only provisional.
            return 1
        conn = self._require_writer()
        try:
            row = conn.execute(
                "SELECT greatest((SELECT coalesce(max(id), 0) FROM events), "
                "coalesce((SELECT value FROM meta WHERE name = 'id_ceiling'), 0))"
            ).fetchone()
            first = (int(row[0]) if row else 0) + 1
            self._set_ceiling(conn, first + ID_BLOCK)
        except psycopg.Error as exc:
            if _is_unavailable(exc, conn):
                self._lose_writer(exc)
                raise StoreUnavailable(f"cannot reserve event ids: {exc}") from exc
            raise StoreError(f"cannot reserve event ids: {exc}") from exc
        return first

    def committed_through(self) -> int:
        """A shared store's: every id up to this one is committed (the counter `_number`
        takes ids from, as last committed: a commit under way holds its row); none above."""
        row = self._one("SELECT value FROM meta WHERE name = 'id_ceiling'")
        return 0 if row is None else int(row[0])

    def release_event_ids(self) -> None:
        conn = self._require_writer()
        if not self._id_ceiling:
            return
        try:
            # The floor for the next run: the last id stored, kept even if that event is
            # deleted later, so its id is not handed out again.
            conn.execute(
                "UPDATE meta SET value = (SELECT coalesce(max(id), 0) FROM events) "
                "WHERE name = 'id_ceiling'"
            )
        except psycopg.Error as exc:
            if _is_unavailable(exc, conn):
                self._lose_writer(exc)
                raise StoreUnavailable(f"cannot release event ids: {exc}") from exc
            raise StoreError(f"cannot release event ids: {exc}") from exc
        self._id_ceiling = 0

    def _set_ceiling(self, conn: Conn, ceiling: int) -> None:
        conn.execute(
            "INSERT INTO meta VALUES ('id_ceiling', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (ceiling,),
        )
        self._id_ceiling = ceiling

    def write(self, ops: list[WriteOp]) -> CommitResult:
        """Apply `ops` in one transaction; return what became durable.

        Events and usage go in by binary COPY; the other ops, in their order, then the
        agents' and sessions' counts of this commit's events (one statement each), the id
        reservation and the producers' marks, go in one pipeline. A value the driver or the
        server refuses rolls everything back and raises StoreError: the pipeline then
        retries op by op, so only the bad op is lost. A lost connection raises
        StoreUnavailable instead, and the next call connects again (see `_reconnect`).
        """
        conn = self._require_writer()
        if self._doubt is not None:
            done = self._resolve_doubt(conn)
            if done is not None:
                return done
        result = CommitResult()
        events = result.events
        usage_rows: list[tuple[Any, ...]] = []
        statements: list[tuple[str, tuple[Any, ...]]] = []
        marks: list[MarkProducer] = []
        xid: int | None = None
        priced = not self.shared
        try:
            for op in ops:
                if type(op) is StoredEvent:
                    events.append(op)
                elif type(op) is RecordUsage:
                    if not priced:  # another Studio of the cluster may have changed prices
                        self._refresh_prices(conn)
                        priced = True
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
                    if type(op) is MarkProducer:
                        marks.append(op)
                    self._statement(op, statements, result)
            # A shared store's rows are made once the commit has numbered its events.
            rows = [] if self.shared else [_event_row(e) for e in events]
            if self._in_doubt and events:
                # Ids are unique and a commit all or nothing: if its first event is stored, the
                # write whose connection was lost committed after all, and this is it again.
                stored = conn.execute(
                    "SELECT 1 FROM events WHERE id = %s", (events[0].id,)
                ).fetchone()
                self._in_doubt = False
                if stored is not None:
                    log.warning(
                        "a write of %d operations, in doubt when its connection was lost, "
                        "had committed: not written again",
                        len(ops),
                    )
                    return result
            with conn.transaction(), conn.cursor() as cur:
                if self.shared and events:
                    rows, usage_rows, xid = self._number(cur, events, usage_rows)
                elif self.shared:
                    # In turn with the others' commits too, whatever it writes: two commits
                    # updating the same agents' rows in another order would deadlock.
                    cur.execute("SELECT 1 FROM meta WHERE name = 'id_ceiling' FOR UPDATE")
                if rows:
                    self._copy(cur, "events", _EVENT_COLS, _EVENT_TYPES, rows)
                if usage_rows:
                    usage_rows = [tuple(map(_no_nul, row)) for row in usage_rows]
                    self._copy(cur, "usage", _USAGE_COLS, _USAGE_TYPES, usage_rows)
                with conn.pipeline():
                    for query, args in statements:
                        cur.execute(query, tuple(map(_no_nul, args)))
                    self._count(cur, events)
                    if events and self._id_ceiling:
                        last = events[-1].id
                        if last > self._id_ceiling - ID_BLOCK // 2:
                            self._set_ceiling(conn, last + ID_BLOCK)  # durable with them
                    if result.producers and self.shared:
                        self._mark_shared(cur, marks, result.producers)
                    elif result.producers:
                        cur.executemany(
                            "INSERT INTO producers (id, last_seq) VALUES (%s, %s) "
                            "ON CONFLICT (id) DO UPDATE SET "
                            "last_seq = greatest(producers.last_seq, excluded.last_seq)",
                            list(result.producers.items()),
                        )
        except (psycopg.Error, TypeError, ValueError, OverflowError) as exc:
            if _is_unavailable(exc, conn):
                # The writer's state is reread from the database at the reconnect.
                self._lose_writer(exc)
                if xid is not None:
                    self._doubt = (xid, result)
                elif not self.shared:
                    self._in_doubt = self._in_doubt or bool(events)
                raise StoreUnavailable(
                    f"write of {len(ops)} operations failed, {self.describe()} cannot be "
                    f"reached: {exc}"
                ) from exc
            # The transaction is rolled back; the writer's state follows the database again.
            try:
                self._prices = PriceTable(self._read_prices(conn))
                if self._id_ceiling:
                    self._id_ceiling = self._read_ceiling(conn)
            except psycopg.Error:
                log.exception("cannot reread the writer's state after a failed write")
            repeated = self._stored_already(conn, marks) if _is_stored_already(exc) else []
            if repeated:
                log.warning(
                    "%d messages of a producer that moved were stored by another Studio "
                    "already: their events are not stored again",
                    len(repeated),
                )
                return self.write(_without(ops, repeated))
            raise StoreError(f"write of {len(ops)} operations failed: {exc}") from exc
        return result

    def _number(
        self,
        cur: psycopg.Cursor[Row],
        events: list[StoredEvent],
        usage_rows: list[tuple[Any, ...]],
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
        """Number a shared store's commit of events past every id handed out before, in
        place; return their rows, the usage rows renumbered, and the transaction's id.

        The counter's row stays locked until this transaction ends, so the cluster's commits
        of events take turns from here on, and ids follow the order of their commits: a
        reader paging by cursor never finds a lower id committed after a higher one.
        """
        n = len(events)
        row = cur.execute(
            "UPDATE meta SET value = value + %s WHERE name = 'id_ceiling' "
            "RETURNING value, txid_current()",
            (n,),
        ).fetchone()
        assert row is not None  # made at open
        first = int(row[0]) - n + 1
        ids = {e.id: first + i for i, e in enumerate(events)}
        events[:] = [e._replace(id=first + i) for i, e in enumerate(events)]
        usage_rows = [(ids.get(r[0], r[0]), *r[1:]) for r in usage_rows]
        return [_event_row(e) for e in events], usage_rows, int(row[1])

    @staticmethod
    def _mark_shared(
        cur: psycopg.Cursor[Row], marks: list[MarkProducer], producers: dict[str, int]
    ) -> None:
        """Store a shared store's producers' marks, failing the commit if another Studio of
        the cluster stored some of its messages already (`_stored_already` then tells which).

        A producer that moves to another Studio resends what it was not acknowledged for,
        while the Studio it left may still commit what it took of the same messages: the
        other Studios are asked to let go of it first, but one cut off from Redis is not
        waited for. So the marks stored decide: read in the commit's turn (this statement
        runs after `_number` took the counter's row, and sees every commit before), a
        message a mark covers is stored already. The statement that advances the marks
        checks them too, dividing by zero when one covers the first message of this commit
        that writes anything: the check costs no statement nor round trip of its own.
        """
        first: dict[str, int] = {}
        for mark in marks:
            if mark.ops and mark.seq < first.get(mark.producer_id, mark.seq + 1):
                first[mark.producer_id] = mark.seq
        ids = list(producers)
        cur.execute(
            "INSERT INTO producers (id, last_seq) "
            "SELECT u.id, u.seq / (CASE WHEN p.last_seq >= u.first THEN 0 ELSE 1 END) "
            "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u (id, seq, first) "
            "LEFT JOIN producers p ON p.id = u.id "
            "ON CONFLICT (id) DO UPDATE SET "
            "last_seq = greatest(producers.last_seq, excluded.last_seq)",
            (ids, [producers[i] for i in ids], [first.get(i) for i in ids]),
        )

    def _stored_already(self, conn: Conn, marks: list[MarkProducer]) -> list[MarkProducer]:
        """After `_mark_shared` failed a commit: the marks of its messages stored already."""
        if not self.shared or not marks:
            return []
        query = "SELECT id, last_seq FROM producers WHERE id = ANY(%s)"
        ids = list({m.producer_id for m in marks})
        try:
            stored: dict[str, int] = dict(conn.execute(query, (ids,)).fetchall())
        except psycopg.Error:
            log.exception("cannot read the producers' marks after a failed write")
            return []
        return [m for m in marks if m.ops and stored.get(m.producer_id, 0) >= m.seq]

    def _resolve_doubt(self, conn: Conn) -> CommitResult | None:
        """What the write in doubt made durable, if it committed after all; None if not."""
        assert self._doubt is not None
        xid, result = self._doubt
        try:
            row = conn.execute("SELECT txid_status(%s)", (xid,)).fetchone()
        except psycopg.Error as exc:
            if _is_unavailable(exc, conn):
                self._lose_writer(exc)
                raise StoreUnavailable(f"cannot ask {self.describe()}: {exc}") from exc
            raise StoreError(f"cannot ask whether a write committed: {exc}") from exc
        status = None if row is None else row[0]
        if status == "in progress":  # the server has not seen its connection go yet
            raise StoreUnavailable(f"a write in doubt is still in progress on {self.describe()}")
        self._doubt = None
        if status != "committed":
            return None
        log.warning(
            "a write of %d events, in doubt when its connection was lost, had committed: "
            "not written again",
            len(result.events),
        )
        return result

    def _refresh_prices(self, conn: Conn) -> None:
        """Reread the price table if a Studio of the cluster changed it since it was read."""
        row = conn.execute("SELECT value FROM meta WHERE name = 'prices_version'").fetchone()
        version = -1 if row is None else int(row[0])
        if version != self._prices_version:
            self._prices = PriceTable(self._read_prices(conn))
            self._prices_version = version

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[Row],
        table: str,
        columns: str,
        types: Sequence[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    @staticmethod
    def _count(cur: psycopg.Cursor[Row], events: list[StoredEvent]) -> None:
        """Add a commit's events to their agents' and sessions' rows, one statement each, and
        their receive times to their blocks of ids (`event_spans`, with the agents').

        The events of an agent without a row (deleted, in this commit or before) are added
        to `forgotten_events` instead, so that the agents' counts and it make every event.
        """
        if not events:
            return
        agents: dict[str, list[int]] = {}  # events, errors, newest receive time
        sessions: dict[str, list[int]] = {}
        for e in events:
            error = int(counts_as_error(e.event_type, e.severity))
            for counts, key in ((agents, _no_nul(e.agent_id)), (sessions, _no_nul(e.session_id))):
                if key is None:
                    continue
                entry = counts.get(key)
                if entry is None:
                    counts[key] = [1, error, e.ts]
                else:
                    entry[0] += 1
                    entry[1] += error
                    entry[2] = max(entry[2], e.ts)
        cur.execute(
            "WITH spans AS (INSERT INTO event_spans (block, min_ts, max_ts) "
            "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[]) "
            "ON CONFLICT (block) DO UPDATE SET "
            "min_ts = least(event_spans.min_ts, excluded.min_ts), "
            "max_ts = greatest(event_spans.max_ts, excluded.max_ts)), "
            "c (id, n, errors, last) AS ("
            "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[])), "
            "counted AS (UPDATE agents SET event_count = agents.event_count + c.n, "
            "error_count = agents.error_count + c.errors, "
            "last_event_at = greatest(coalesce(agents.last_event_at, 0), c.last) "
            "FROM c WHERE agents.id = c.id RETURNING agents.id) "
            "UPDATE meta SET value = value + (SELECT coalesce(sum(c.n), 0) FROM c "
            "WHERE c.id NOT IN (SELECT id FROM counted)) WHERE name = 'forgotten_events'",
            (*_spans(events), *_columns(agents)),
        )
        if sessions:
            cur.execute(
                "UPDATE sessions SET event_count = sessions.event_count + c.n, "
                "error_count = sessions.error_count + c.errors, "
                "updated_at = greatest(sessions.updated_at, c.last) "
                "FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[]) "
                "AS c (id, n, errors, last) WHERE sessions.id = c.id",
                _columns(sessions),
            )

    def _read_ceiling(self, conn: Conn) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'id_ceiling'").fetchone()
        return int(row[0]) if row else 0

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

    def _statement(
        self, op: WriteOp, into: list[tuple[str, tuple[Any, ...]]], result: CommitResult
    ) -> None:
        """Add the statement of one op (not an event nor usage) to `into`; prices and
        producers' marks change in memory now, in the ops' order."""
        if isinstance(op, UpsertAgent):
            if op.implicit:
                into.append(
                    (
                        "INSERT INTO agents (id, registered_at, last_seen, implicit) "
                        "VALUES (%s, %s, %s, true) ON CONFLICT (id) DO NOTHING",
                        (op.id, op.ts, op.ts),
                    )
                )
            else:
                into.append(
                    (
                        "INSERT INTO agents (id, name, model, template_id, capabilities, "
                        "metadata, state, registered_at, last_seen, implicit) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, false) "
                        "ON CONFLICT (id) DO UPDATE SET "
                        "name = coalesce(excluded.name, agents.name), "
                        "model = coalesce(excluded.model, agents.model), "
                        "template_id = coalesce(excluded.template_id, agents.template_id), "
                        "capabilities = excluded.capabilities, metadata = excluded.metadata, "
                        "state = excluded.state, last_seen = excluded.last_seen, implicit = false",
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
                )
        elif isinstance(op, EditAgent):
            into.append(
                (
                    "UPDATE agents SET name = coalesce(%s, name), metadata = %s WHERE id = %s",
                    (op.name, _json(op.metadata), op.id),
                )
            )
        elif isinstance(op, AgentState):
            into.append(
                (
                    "UPDATE agents SET state = %s, last_seen = %s, current_session_id = %s "
                    "WHERE id = %s",
                    (op.state, op.last_seen, op.current_session_id, op.id),
                )
            )
        elif isinstance(op, UpsertSession):
            if op.implicit:
                into.append(
                    (
                        "INSERT INTO sessions (id, agent_id, status, created_at, updated_at) "
                        "VALUES (%s, %s, 'active', %s, %s) ON CONFLICT (id) DO NOTHING",
                        (op.id, op.agent_id, op.ts, op.ts),
                    )
                )
            else:
                owners = None if op.owners is None else list(op.owners)
                into.append(
                    (
                        "INSERT INTO sessions (id, agent_id, status, created_at, updated_at, "
                        "metadata) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                        "SET agent_id = excluded.agent_id, status = excluded.status, "
                        "updated_at = excluded.updated_at, metadata = excluded.metadata, "
                        "ended_at = NULL "
                        "WHERE %s::text[] IS NULL OR sessions.agent_id = ANY(%s::text[])",
                        (
                            op.id,
                            op.agent_id,
                            op.status,
                            op.created_at or op.ts,
                            op.ts,
                            _json(op.metadata),
                            owners,
                            owners,
                        ),
                    )
                )
        elif isinstance(op, EndSession):
            owners = None if op.owners is None else list(op.owners)
            into.append(
                (
                    "UPDATE sessions SET status = %s, ended_at = %s, updated_at = %s "
                    "WHERE id = %s AND (%s::text[] IS NULL OR agent_id = ANY(%s::text[]))",
                    (op.status, op.ts, op.ts, op.id, owners, owners),
                )
            )
        elif isinstance(op, MarkProducer):
            if op.seq > result.producers.get(op.producer_id, 0):
                result.producers[op.producer_id] = op.seq
        elif isinstance(op, SetPrice):
            p = op.price
            into.append(
                (
                    "INSERT INTO prices (model, input_per_m, output_per_m, currency, updated_at, "
                    "cache_read_per_m, cache_write_per_m) VALUES (%s, %s, %s, %s, %s, %s, %s) "
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
            )
            if self.shared:
                into.append(("UPDATE meta SET value = value + 1 WHERE name = 'prices_version'", ()))
            self._prices.set(p)
        elif isinstance(op, DeletePrice):
            into.append(("DELETE FROM prices WHERE model = %s", (op.model,)))
            self._prices.remove(op.model)
        elif isinstance(op, DeleteAgent):
            # Its events stay stored, and counted: what its row counted goes to the events
            # without an agent (this commit's follow in `_count`).
            into.append(
                (
                    "UPDATE meta SET value = value + "
                    "coalesce((SELECT event_count FROM agents WHERE id = %s), 0) "
                    "WHERE name = 'forgotten_events'",
                    (op.id,),
                )
            )
            into.append(("DELETE FROM agents WHERE id = %s", (op.id,)))
        elif isinstance(op, SaveRequest):
            r = op.record
            into.append(
                (
                    f"INSERT INTO requests ({_REQUEST_COLS}) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET "
                    + ", ".join(
                        f"{c} = excluded.{c}" for c in _REQUEST_COLS.split(", ") if c != "id"
                    ),
                    request_row(r),
                )
            )
        elif isinstance(op, MarkObserved):
            into.append(
                (
                    "UPDATE meta SET value = greatest(value, %s) WHERE name = 'observed_through'",
                    (op.through,),
                )
            )
        elif isinstance(op, AddAudit):
            into.append(
                (
                    "INSERT INTO audit (ts, actor, action, request_id, agent_id, detail) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (op.ts, op.actor, op.action, op.request_id, op.agent_id, _json(op.detail)),
                )
            )
        else:  # pragma: no cover - every WriteOp is handled above
            raise TypeError(f"unknown write operation {type(op).__name__}")

    # ---- administration (rare writes, on a reader connection; the CLI uses these) ----

    @contextmanager
    def _admin(self) -> Iterator[Conn]:
        readers = self._readers
        if readers is None:
            raise StoreError("store is not open")
        with readers.connection() as conn:
            try:
                with conn.transaction():
                    # One statement at a time, each on the latest rows: two Studios of a
                    # cluster writing the same key at once must not fail on each other.
                    conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    yield conn
            except psycopg.Error as exc:
                error = StoreUnavailable if _is_unavailable(exc, conn) else StoreError
                raise error(f"administrative write failed: {exc}") from exc

    def add_key(self, key: AgentKey) -> None:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO agent_keys VALUES (%s, %s, %s, %s, %s, %s)",
                (key.id, key.name, key.pattern, key.hash, key.created_at, key.revoked_at),
            )

    def revoke_key(self, key_id: str, ts: int) -> bool:
        with self._admin() as conn:
            cur = conn.execute(
                "UPDATE agent_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (ts, key_id),
            )
            return cur.rowcount > 0

    def agent_keys(self) -> list[AgentKey]:
        rows = self._all(
            "SELECT id, name, pattern, hash, created_at, revoked_at FROM agent_keys "
            "ORDER BY created_at, id"
        )
        return [AgentKey(*r) for r in rows]

    def get_secret(self, name: str) -> str | None:
        row = self._one("SELECT value FROM secrets WHERE name = %s", (name,))
        return str(row[0]) if row else None

    def set_secret(self, name: str, value: str, ts: int) -> None:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO secrets VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                (name, value, ts),
            )

    def add_secret(self, name: str, value: str, ts: int) -> str:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO secrets VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (name, value, ts),
            )
            row = conn.execute("SELECT value FROM secrets WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise StoreError(f"no secret {name!r} after writing it")
        return str(row[0])

    def add_console_session(self, session: ConsoleSession, now_ms: int) -> None:
        with self._admin() as conn:
            conn.execute("DELETE FROM console_sessions WHERE expires_at <= %s", (now_ms,))
            conn.execute(
                "INSERT INTO console_sessions VALUES (%s, %s, %s, %s)",
                (session.id_hash, session.csrf, session.credential, session.expires_at),
            )

    def get_console_session(self, id_hash: str, now_ms: int) -> ConsoleSession | None:
        row = self._one(
            "SELECT id_hash, csrf, credential, expires_at FROM console_sessions "
            "WHERE id_hash = %s AND expires_at > %s",
            (id_hash, now_ms),
        )
        return ConsoleSession(*row) if row else None

    def delete_console_session(self, id_hash: str) -> None:
        with self._admin() as conn:
            conn.execute("DELETE FROM console_sessions WHERE id_hash = %s", (id_hash,))

    def console_sessions(self, now_ms: int) -> list[ConsoleSession]:
        rows = self._all(
            "SELECT id_hash, csrf, credential, expires_at FROM console_sessions "
            "WHERE expires_at > %s",
            (now_ms,),
        )
        return [ConsoleSession(*r) for r in rows]

    # ---- reads (any thread) ----

    def list_requests(
        self, *, status: str | None, agent_id: str | None, kind: str | None, limit: int
    ) -> list[RequestRecord]:
        where, args = [], []
        for column, value in (("status", status), ("agent_id", agent_id), ("kind", kind)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        rows = self._all(
            f"SELECT {_REQUEST_COLS} FROM requests{_where_all(where)} "
            "ORDER BY created_at DESC, id LIMIT %s",
            [*args, _limit(limit)],
        )
        return [request_of(r) for r in rows]

    def open_requests(self) -> list[RequestRecord]:
        """Requests still pending, or decided but not yet acknowledged by the agent."""
        rows = self._all(
            f"SELECT {_REQUEST_COLS} FROM requests WHERE status = 'pending' "
            "OR (status = 'decided' AND acknowledged_at IS NULL) ORDER BY created_at, id"
        )
        return [request_of(r) for r in rows]

    def unobserved_events(self, event_types: Collection[str]) -> list[StoredEvent]:
        rows = self._all(
            f"SELECT {_EVENT_COLS} FROM events WHERE id > coalesce("
            "(SELECT value FROM meta WHERE name = 'observed_through'), 0) "
            "AND event_type = ANY(%s::text[]) ORDER BY id",
            (list(event_types),),
        )
        return [self._event(r) for r in rows]

    def get_request(self, request_id: str) -> RequestRecord | None:
        row = self._one(f"SELECT {_REQUEST_COLS} FROM requests WHERE id = %s", (request_id,))
        return request_of(row) if row else None

    def audit(
        self, *, agent_id: str | None, request_id: str | None, limit: int
    ) -> list[AuditRecord]:
        where, args = [], []
        for column, value in (("agent_id", agent_id), ("request_id", request_id)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        rows = self._all(
            "SELECT id, ts, actor, action, request_id, agent_id, detail FROM audit"
            f"{_where_all(where)} ORDER BY id DESC LIMIT %s",
            [*args, _limit(limit)],
        )
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows]

    def load_agents(self) -> list[AgentRecord]:
        rows = self._all(
            "SELECT id, name, model, template_id, capabilities, metadata, state, "
            "registered_at, last_seen, last_event_at, current_session_id, implicit, "
            "event_count, error_count FROM agents ORDER BY seq"
        )
        return [
            AgentRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                tuple(orjson.loads(r[4])),
                orjson.loads(r[5]),
                r[6],
                r[7],
                # `last_seen` is written with state changes and disconnects, not per event:
                # after a crash its newest event is later contact.
                r[8] if r[9] is None else max(r[8], r[9]),
                r[9],
                r[10],
                bool(r[11]),
                r[12],
                r[13],
            )
            for r in rows
        ]

    def forgotten_events(self) -> int:
        row = self._one("SELECT value FROM meta WHERE name = 'forgotten_events'")
        return int(row[0]) if row else 0

    def usage_by_agent(self) -> dict[str, UsageTotals]:
        rows = self._all(f"SELECT agent_id, {_USAGE_SUMS} FROM usage GROUP BY agent_id")
        return {r[0]: _totals(r) for r in rows}

    def producer_seq(self, producer_id: str) -> int:
        row = self._one("SELECT last_seq FROM producers WHERE id = %s", (producer_id,))
        return int(row[0]) if row else 0

    def prices(self) -> list[Price]:
        return self._read(self._read_prices)

    @staticmethod
    def _read_prices(conn: Conn) -> list[Price]:
        rows = conn.execute(
            "SELECT model, input_per_m, output_per_m, currency, cache_read_per_m, "
            "cache_write_per_m FROM prices ORDER BY model"
        ).fetchall()
        return [Price(*r) for r in rows]

    @staticmethod
    def _session(r: Row) -> SessionRecord:
        return SessionRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])

    def active_sessions_by_agent(self) -> dict[str, int]:
        rows = self._all(
            "SELECT agent_id, count(*) FROM sessions WHERE status = 'active' GROUP BY agent_id"
        )
        return {str(r[0]): int(r[1]) for r in rows}

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
                where.append("status = 'active' AND agent_id = ANY(%s::text[])")
            else:
                where.append(
                    "(status = 'suspended' OR status = 'active' AND NOT agent_id = ANY(%s::text[]))"
                )
            args.append(list(connected))
        elif status:
            where.append("status = %s")
            args.append(status)
        if agent_id:
            where.append("agent_id = %s")
            args.append(agent_id)
        if outcome is not None:
            where.append(f"({_OUTCOMES[outcome]})")
        clause = _where_all(where)

        def read(conn: Conn) -> tuple[Row | None, list[Row]]:
            total_row = conn.execute(f"SELECT count(*) FROM sessions{clause}", args).fetchone()
            rows = conn.execute(
                f"SELECT {_SESSION_COLS} FROM sessions{clause} ORDER BY updated_at DESC, id "
                "LIMIT %s OFFSET %s",
                [*args, _limit(limit), max(offset, 0)],
            ).fetchall()
            return total_row, rows

        total_row, rows = self._read(read, snapshot=True)
        total = int(total_row[0]) if total_row else 0
        return [self._session(r) for r in rows], total

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self._one(f"SELECT {_SESSION_COLS} FROM sessions WHERE id = %s", (session_id,))
        return self._session(row) if row else None

    def session_usage(self, session_ids: list[str]) -> dict[str, UsageTotals]:
        if not session_ids:
            return {}
        rows = self._all(
            f"SELECT session_id, {_USAGE_SUMS} FROM usage "
            "WHERE session_id = ANY(%s::text[]) GROUP BY session_id",
            (list(session_ids),),
        )
        return {r[0]: _totals(r) for r in rows}

    @staticmethod
    def _where(flt: EventFilter, keyed: str | None = None) -> tuple[list[str], list[Any]]:
        """The conditions of `flt`, as SqliteStore._where makes them; none on the column
        `keyed` (the caller's own)."""
        where: list[str] = []
        args: list[Any] = []
        for column, values in (
            ("agent_id", flt.agent_ids),
            ("session_id", flt.session_ids),
            ("channel", flt.channels),
        ):
            if values and column != keyed:
                where.append(f"{column} = ANY(%s::text[])")
                args.append([_no_nul(v) for v in values])
        # Types and severities match whatever their case, as the live stream's filter does.
        for column, values in (("event_type", flt.event_types), ("severity", flt.severities)):
            if values:
                where.append(f"lower({column}) = ANY(%s::text[])")
                args.append([_no_nul(v.lower()) for v in values])
        if flt.start_ms is not None:
            where.append("ts >= %s")
            args.append(flt.start_ms)
        if flt.end_ms is not None:
            where.append("ts < %s")
            args.append(flt.end_ms)
        if flt.text:
            # Search for the text as orjson writes it in the payloads (quotes, backslashes and
            # line breaks escaped), ASCII letters of either case, as SQLite's LIKE matches: the
            # payload's "C" collation makes `lower` fold ASCII only.
            try:
                written = orjson.dumps(flt.text)[1:-1].decode()
            except TypeError:  # a lone surrogate: no stored payload holds one
                written = flt.text
            escaped = written.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("lower(payload) LIKE %s ESCAPE '\\'")
            args.append(f"%{escaped.translate(_ASCII_LOWER)}%")
        return where, args

    @staticmethod
    def _event(r: Row) -> StoredEvent:
        return StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8].encode())

    def events_before(self, flt: EventFilter, before: int | None, limit: int) -> list[StoredEvent]:
        return self._events(flt, None, before, limit, newest_first=True)

    def events_after(self, flt: EventFilter, after: int, limit: int) -> list[StoredEvent]:
        return self._events(flt, after, None, limit, newest_first=False)

    def _events(
        self,
        flt: EventFilter,
        after: int | None,
        before: int | None,
        limit: int,
        *,
        newest_first: bool,
    ) -> list[StoredEvent]:
        """Up to `limit` events of `flt` with after < id < before, newest or oldest first.

        The planner, left to itself, took the wrong road for the reads that matter most: a
        time range (the primary key walked from the newest event, filtering `ts`), a text
        search it thought rare (the whole table scanned and sorted) and one agent's events
        (`= ANY` of one value kept its index from giving them in order). So a time range
        becomes ids first (`_id_range`); by agent or session each key's index is walked in
        order (`_keyed`); any other filter walks the ids in windows (`_walk`).
        """
        keyed = "session_id" if flt.session_ids else "agent_id" if flt.agent_ids else None
        where, args = self._where(flt, keyed)
        n = _limit(limit)
        timed = flt.start_ms is not None or flt.end_ms is not None

        def read(conn: Conn) -> list[Row]:
            bounds = self._id_range(conn, flt.start_ms, flt.end_ms) if timed else (None, None)
            if bounds is None:
                return []
            low, high = bounds
            if after is not None:
                low = after if low is None else max(low, after)
            if before is not None:
                high = before if high is None else min(high, before)
            if keyed is not None:
                keys = flt.session_ids if keyed == "session_id" else flt.agent_ids
                return self._keyed(conn, keyed, keys or (), where, args, low, high, n, newest_first)
            if n is not None and where:
                return self._walk(conn, where, args, low, high, n, newest_first)
            cond, cond_args = _with_bounds(where, args, low, high)
            return conn.execute(
                f"SELECT {_EVENT_COLS} FROM events{_where_all(cond)} "
                f"ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT %s",
                [*cond_args, n],
            ).fetchall()

        # A time range's ids and the events read in one snapshot; so are a walk's windows.
        rows = self._read(read, snapshot=timed or (keyed is None and bool(where)))
        return [self._event(r) for r in rows]

    @staticmethod
    def _id_range(
        conn: Conn, start_ms: int | None, end_ms: int | None
    ) -> tuple[int | None, int | None] | None:
        """Ids `(low, high)` around every event received in [start_ms, end_ms): low < id <
        high (None: no bound that side); None if no event was received in it.

        Found from the receive times of each block of ids (`event_spans`). Nothing assumes
        that the clock only moves forward: while it does, the bounds are at most a block wider
        than the range; where it stepped back, wider still. The caller's `ts` conditions pick
        the events within them.
        """
        edges, args = [], []
        if start_ms is not None:
            # The blocks before the first that reaches `start_ms` are older throughout.
            edges.append("(SELECT min(block) FROM event_spans WHERE max_ts >= %s)")
            args.append(start_ms)
        if end_ms is not None:
            # The blocks after the last that reaches below `end_ms` are newer throughout.
            edges.append("(SELECT max(block) FROM event_spans WHERE min_ts < %s)")
            args.append(end_ms)
        row = conn.execute(f"SELECT {', '.join(edges)}", args).fetchone()
        if row is None or None in row:
            return None
        blocks = iter(row)
        low = None if start_ms is None else int(next(blocks)) * SPAN_IDS - 1
        high = None if end_ms is None else (int(next(blocks)) + 1) * SPAN_IDS
        return low, high

    @staticmethod
    def _keyed(
        conn: Conn,
        column: str,
        values: Sequence[str],
        where: list[str],
        args: list[Any],
        low: int | None,
        high: int | None,
        limit: int | None,
        newest_first: bool,
    ) -> list[Row]:
        """The events whose `column` is one of `values` and that meet `where`: each key's own
        in order through its index on `(column, id)`, at most `limit` of each, merged.

        With `= ANY` the index could not give them in order (one agent's 5,000 events of
        1,000,000 were read and sorted, or the primary key walked). With `column = key` the
        planner, thinking a key's events spread evenly over the ids, still walked the primary
        key from the newest event when it guessed the key common: for an agent gone quiet,
        past every newer event. So the key is pinned by a range (`>=` and `<=`, the same as
        `=` in the "C" collation) and the order is `(column, id)`, which only that index
        gives.
        """
        keys = sorted({_no_nul(v) for v in values})
        cond, cond_args = _with_bounds(where, args, low, high)
        order = "DESC" if newest_first else "ASC"
        pinned = [f"{column} >= k.key", f"{column} <= k.key", *cond]
        return conn.execute(
            f"SELECT e.* FROM unnest(%s::text[]) AS k (key) CROSS JOIN LATERAL ("
            f"SELECT {_EVENT_COLS} FROM events WHERE {' AND '.join(pinned)} "
            f"ORDER BY {column} {order}, id {order} LIMIT %s) AS e ORDER BY e.id {order} LIMIT %s",
            [keys, *cond_args, limit, limit],
        ).fetchall()

    @staticmethod
    def _walk(
        conn: Conn,
        where: list[str],
        args: list[Any],
        low: int | None,
        high: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Row]:
        """Up to `limit` events meeting `where` with low < id < high, read in windows of ids
        from the newest (or oldest) on, each WINDOW_GROWTH times wider than the last.

        A filter that matches often stops in the first window, a rare one scans about what
        one query would. Asked for all of them at once, the planner guesses a text search's
        matches from the pattern's length, and for a frequent one sorted the whole table
        (560 ms on 1,000,000 events, where the first window takes under 1 ms).
        """
        bound, bound_args = _with_bounds([], [], low, high)
        edges = conn.execute(
            f"SELECT min(id), max(id) FROM events{_where_all(bound)}", bound_args
        ).fetchone()
        if edges is None or edges[0] is None:
            return []
        bottom, top = int(edges[0]), int(edges[1])
        query = (
            f"SELECT {_EVENT_COLS} FROM events WHERE {' AND '.join(where)} "
            f"AND id >= %s AND id <= %s ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT %s"
        )
        rows: list[Row] = []
        width = FIRST_WINDOW
        # Each turn moves past `width` ids, which grows geometrically: at most ~30 turns.
        if newest_first:
            hi = top
            while hi >= bottom and len(rows) < limit:
                lo = max(hi - width + 1, bottom)
                rows += conn.execute(query, [*args, lo, hi, limit - len(rows)]).fetchall()
                hi, width = lo - 1, width * WINDOW_GROWTH
        else:
            lo = bottom
            while lo <= top and len(rows) < limit:
                hi = min(lo + width - 1, top)
                rows += conn.execute(query, [*args, lo, hi, limit - len(rows)]).fetchall()
                lo, width = hi + 1, width * WINDOW_GROWTH
        return rows

    def count_events(self, flt: EventFilter) -> int:
        where, args = self._where(flt)
        if flt.start_ms is None and flt.end_ms is None:
            row = self._one(f"SELECT count(*) FROM events{_where_all(where)}", args)
            return int(row[0]) if row else 0

        def read(conn: Conn) -> int:
            bounds = self._id_range(conn, flt.start_ms, flt.end_ms)
            if bounds is None:
                return 0
            cond, cond_args = _with_bounds(where, args, *bounds)
            row = conn.execute(f"SELECT count(*) FROM events{_where_all(cond)}", cond_args)
            found = row.fetchone()
            return int(found[0]) if found else 0

        return self._read(read, snapshot=True)

    def event_counts_by_type(self, start_ms: int, end_ms: int) -> dict[str, int]:
        def read(conn: Conn) -> list[Row]:
            bounds = self._id_range(conn, start_ms, end_ms)
            if bounds is None:
                return []
            cond, args = _with_bounds(["ts >= %s", "ts < %s"], [start_ms, end_ms], *bounds)
            return conn.execute(
                f"SELECT event_type, count(*) FROM events{_where_all(cond)} GROUP BY event_type",
                args,
            ).fetchall()

        return {r[0]: int(r[1]) for r in self._read(read, snapshot=True)}

    def usage_of_events(self, first_id: int, last_id: int) -> list[tuple[int, str, Usage]]:
        rows = self._all(USAGE_OF_EVENTS, (first_id, last_id))
        return [usage_of(row) for row in rows]

    def usage_rows(self, query: UsageQuery) -> list[UsageRow]:
        where = ["ts >= %s", "ts < %s"]
        args: list[Any] = [query.start_ms, query.end_ms]
        for column, value in (
            ("agent_id", query.agent_id),
            ("session_id", query.session_id),
            ("model", query.model),
        ):
            if value == "" and column == "model":  # the usage that names no model
                where.append("model IS NULL")
            elif value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        if query.bucket_ms:
            bucket = int(query.bucket_ms)
            key = f"(ts / {bucket}) * {bucket}"
        elif query.group_by in ("model", "agent", "session"):
            key = {"model": "model", "agent": "agent_id", "session": "session_id"}[query.group_by]
        else:
            key = "NULL::text"
        rows = self._all(
            f"SELECT {key} AS k, {_USAGE_SUMS} FROM usage WHERE {' AND '.join(where)} "
            "GROUP BY k ORDER BY k NULLS FIRST",
            args,
        )
        return [UsageRow(*r) for r in rows]


def _spans(events: list[StoredEvent]) -> tuple[list[int], list[int], list[int]]:
    """(blocks, lowest, highest receive times) of `events`' blocks of ids, for `unnest`."""
    ids = [e.id for e in events]
    times = [e.ts for e in events]
    block = ids[0] // SPAN_IDS
    if min(ids) // SPAN_IDS == block == max(ids) // SPAN_IDS:  # all in one: most commits
        return [block], [min(times)], [max(times)]
    spans: dict[int, list[int]] = {}
    for i, ts in zip(ids, times, strict=True):
        span = spans.setdefault(i // SPAN_IDS, [ts, ts])
        if ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    return list(spans), [s[0] for s in spans.values()], [s[1] for s in spans.values()]


def _columns(counts: dict[str, list[int]]) -> tuple[list[str], list[int], list[int], list[int]]:
    """(keys, events, errors, newest times) of per-key counts, as arrays for `unnest`."""
    return (
        list(counts),
        [c[0] for c in counts.values()],
        [c[1] for c in counts.values()],
        [c[2] for c in counts.values()],
    )


__all__ = ["MIGRATIONS", "PostgresStore", "describe_dsn"]
