"""A PostgreSQL outage: the Studio holds what agents send while its database connections are
cut, stores every event once when it is back, and says so in /healthz meanwhile.

PostgreSQL-only whatever ASTER_STUDIO_TEST_BACKEND says: SQLite has no connection to lose.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.agent import RawAgent, event
from tests.support.api import call, events, get, wait_for
from tests.support.postgres import fresh_schema, postgres_dsn
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def pg_studio() -> Iterator[tuple[StudioProcess, str, str]]:
    """(a Studio on a fresh schema, the DSN, the schema)."""
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        server = StudioProcess(f"{dsn}?schema={schema}").start()
        try:
            yield server, dsn, schema
        finally:
            server.stop()


class Sender:
    """An agent sending numbered events at a steady pace from a thread of its own."""

    def __init__(self, url: str) -> None:
        self.agent = RawAgent(url)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 20 * UNIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.agent.send(event("outage-1", "text_chunk", delta=str(self.sent)))
            self.sent += 1
            time.sleep(0.005)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.agent.close()


def cut(dsn: str, server: StudioProcess, *, lock_schema: str | None = None) -> Any:
    """End the server's own database connections (its readers, then its writer, found by the
    application names its pid is in), as a restarted PostgreSQL would. With `lock_schema`,
    take that schema's writer lock as the writer ends, before it reconnects: the connection
    holding it is returned, and the writer cannot write until it is closed."""
    from aster_studio.store.postgres import LOCK_PREFIX

    assert server.proc is not None
    writer = f"aster-studio pid {server.proc.pid}"
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2)
    try:
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (f"{writer} reader",),
        )
        # The lock is asked for in the statement that ends the writer, once it is told to
        # end (the aggregate first), and waited for: the ending session lets go of it a
        # moment later, and hands it to the one waiting in line, not to the writer's own try
        # when it reconnects (a try never waits in line). Waiting for the end first would not
        # do: PostgreSQL checks every 100 ms, and the writer is back in 50.
        conn.execute("SET lock_timeout = '5s'")
        row = conn.execute(
            "WITH ended AS (SELECT count(*) AS n, bool_and(pg_terminate_backend(pid)) "
            "AS ok FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()) "
            "SELECT n, ok, CASE WHEN %s::text IS NULL THEN NULL ELSE "
            "pg_advisory_lock((%s::bigint << 32) | "
            "(SELECT oid::bigint FROM pg_namespace WHERE nspname = %s)) END FROM ended",
            (writer, lock_schema, LOCK_PREFIX, lock_schema),
        ).fetchone()
        assert row is not None and row[0] == 1 and row[1], row  # its writer, ended
        if lock_schema is None:
            conn.close()
            return None
        assert row[2] is not None
        return conn
    except BaseException:
        conn.close()
        raise


def healthz(server: StudioProcess) -> tuple[int, Any]:
    return call(server.http_url, "/healthz")


def test_events_sent_through_cut_database_connections_are_all_stored_once(
    pg_studio: tuple[StudioProcess, str, str],
) -> None:
    server, dsn, schema = pg_studio
    with Sender(server.agent_url) as sender:
        wait_for(lambda: sender.sent, lambda n: n >= 50, timeout=5 * UNIT)
        cut(dsn, server)  # the first: the writer and readers connect again at once
        wait_for(lambda: sender.sent, lambda n: n >= 150, timeout=5 * UNIT)
        holder = cut(dsn, server, lock_schema=schema)  # the second: the writer stays out
        try:
            status, body = wait_for(
                lambda: healthz(server), lambda r: r[0] == 503, timeout=5 * UNIT
            )
            assert "cannot be reached since" in body["store"]["error"], body
            assert body["status"] == "degraded"
            held_at = sender.sent
            wait_for(lambda: sender.sent, lambda n: n >= held_at + 50, timeout=5 * UNIT)
        finally:
            holder.close()
        wait_for(lambda: healthz(server)[0], lambda s: s == 200, timeout=5 * UNIT)
    sent = sender.sent
    wait_for(
        lambda: get(server.http_url, "/v1/dashboard/events/count?agent_id=outage-1")["count"],
        lambda n: n >= sent,
        timeout=10 * UNIT,
    )
    stored = [int(e["event"]["delta"]) for e in events(server.http_url, "agent_id=outage-1")]
    assert sorted(stored) == list(range(sent))  # every one, once
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5 * UNIT) as response:
        metrics = dict(
            line.split(" ", 1) for line in response.read().decode().splitlines() if line[:1] != "#"
        )
    assert float(metrics["aster_store_unavailable_seconds_total"]) > 0
    assert (metrics["aster_store_unavailable"], metrics["aster_store_failed_ops_total"]) == (
        "0",
        "0",
    )
    # Still serving: a new agent's events are stored.
    with RawAgent(server.agent_url) as agent:
        agent.send(event("after-1", "text_chunk", delta="x"))
    wait_for(
        lambda: get(server.http_url, "/v1/dashboard/events/count?agent_id=after-1")["count"],
        lambda n: n == 1,
        timeout=5 * UNIT,
    )
    out = "".join(server.output)
    assert "cannot be reached" in out and "dropping" not in out
