"""A Studio on PostgreSQL, through its command line: what differs from SQLite's file.

The same integration tests run on both backends (ASTER_STUDIO_TEST_BACKEND); these are the
PostgreSQL-only ones, run whatever that variable says.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, get, wait_for
from tests.support.postgres import fresh_schema, postgres_dsn
from tests.support.server import StudioProcess, run_cli


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh schema's URL, with a password in it (trust auth ignores it): it must never show."""
    dsn = postgres_dsn()
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    with fresh_schema(dsn) as schema:
        netloc = f"{user}:hunter2-secret@{host}"
        yield urlunsplit(parts._replace(netloc=netloc, query=f"schema={schema}"))


def send_text(server: StudioProcess, agent_id: str, count: int) -> None:
    with RawAgent(server.agent_url) as agent:
        agent.request(register(agent_id, model="gpt-4o"))
        for i in range(count):
            agent.send(event(agent_id, "text_chunk", channel="progress", content=f"t{i}"))
        agent.request({"type": "ping"})


def test_restart_keeps_every_event_and_continues_the_cursor(url: str) -> None:
    server = StudioProcess(url).start()
    try:
        send_text(server, "pg-a", 25)
        wait_for(
            lambda: get(server.http_url, "/v1/dashboard/events/count"), lambda d: d["count"] == 25
        )
        store_id = call(server.http_url, "/healthz")[1]["store"]["id"]
        newest = events(server.http_url)[-1]["cursor"]
    finally:
        assert server.stop() == 0
    again = StudioProcess(url).start()
    try:
        assert call(again.http_url, "/healthz")[1]["store"]["id"] == store_id
        send_text(again, "pg-a", 1)
        stored = wait_for(lambda: events(again.http_url), lambda items: len(items) == 26)
        assert stored[-1]["cursor"] > newest
        assert [e["event"]["content"] for e in stored] == [
            *(f"t{i}" for i in range(25)),
            "t0",
        ]
        agent = get(again.http_url, "/v1/dashboard/agents/pg-a")
        assert agent["event_count"] == 26
    finally:
        again.stop()


def test_the_password_is_never_shown(url: str) -> None:
    server = StudioProcess(url).start()
    try:
        health = call(server.http_url, "/healthz")[1]
        assert health["store"]["backend"].startswith("postgresql://")
        assert "hunter2" not in str(health)
    finally:
        server.stop()
    assert "data:     postgresql://" in "".join(server.output)
    assert "hunter2" not in "".join(server.output)


def test_a_second_studio_on_the_same_schema_is_refused(url: str) -> None:
    """One writer per database: the second names the first and exits; the command line still
    manages keys beside the running one, and the running one accepts the new key."""
    server = StudioProcess(url).start()
    try:
        assert server.proc is not None
        second = run_cli("serve", "--port", "0", "--db", url)
        assert second.returncode == 2, second.stderr
        assert f"pid {server.proc.pid}" in second.stderr
        assert "hunter2" not in second.stderr
        created = run_cli("keys", "create", "--name", "pg", "--db", url)
        assert created.returncode == 0, created.stderr
        assert "hunter2" not in created.stdout + created.stderr
        listed = run_cli("keys", "list", "--db", url)
        assert "pg" in listed.stdout
        assert call(server.http_url, "/healthz")[0] == 200
    finally:
        server.stop()


def test_studios_on_two_schemas_of_one_database_run_side_by_side(url: str) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn) as other_schema:
        one = StudioProcess(url).start()
        two = StudioProcess(f"{dsn}?schema={other_schema}").start()
        try:
            send_text(one, "only-one", 3)
            send_text(two, "only-two", 2)
            assert wait_for(
                lambda: get(one.http_url, "/v1/dashboard/events/count"), lambda d: d["count"] == 3
            )
            assert wait_for(
                lambda: get(two.http_url, "/v1/dashboard/events/count"), lambda d: d["count"] == 2
            )
            ids = [a["id"] for a in get(two.http_url, "/v1/dashboard/agents")["agents"]]
            assert ids == ["only-two"]
        finally:
            one.stop()
            two.stop()


@pytest.mark.parametrize(
    ("db", "says"),
    [
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "cannot connect to postgresql://"),
        ("postgresql://postgres@127.0.0.1:5432/test?schema=a&schema=b", "one non-empty"),
        ("mysql://user:hunter2@127.0.0.1/db", "unsupported database URL scheme 'mysql'"),
    ],
)
def test_a_database_that_cannot_be_used_is_named_plainly(db: str, says: str) -> None:
    result = run_cli("serve", "--port", "0", "--db", db)
    assert result.returncode == 2
    assert says in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
