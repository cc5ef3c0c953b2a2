"""Console credentials: which token is in force, and sessions that end with it, outlive a
restart and are shared by the Studios of one database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from aster_studio.auth import (
    CONSOLE_SECRET,
    MAX_LOOKUPS,
    SESSION_TTL_S,
    Auth,
    hash_secret,
)
from aster_studio.models import AgentKey, ConsoleSession
from aster_studio.store import SqliteStore, Store
from tests.support.timing import UNIT


class Secrets:
    """The part of a store Auth reads and writes: keys (none here), the stored console token
    and the console sessions; it counts the reads of one session."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.sessions: dict[str, ConsoleSession] = {}
        self.session_reads = 0

    def agent_keys(self) -> list[AgentKey]:
        return []

    def get_secret(self, name: str) -> str | None:
        return self.secrets.get(name)

    def set_secret(self, name: str, value: str, ts: int) -> None:
        self.secrets[name] = value

    def add_console_session(self, session: ConsoleSession, now_ms: int) -> None:
        self.sessions[session.id_hash] = session

    def get_console_session(self, id_hash: str, now_ms: int) -> ConsoleSession | None:
        self.session_reads += 1
        session = self.sessions.get(id_hash)
        return session if session is not None and session.expires_at > now_ms else None

    def delete_console_session(self, id_hash: str) -> None:
        self.sessions.pop(id_hash, None)

    def console_sessions(self, now_ms: int) -> list[ConsoleSession]:
        return [s for s in self.sessions.values() if s.expires_at > now_ms]


def auth_with(
    configured: str | None, stored: str | None, store: Secrets | None = None
) -> tuple[Auth, Secrets]:
    store = store or Secrets()
    if stored is not None:
        store.secrets[CONSOLE_SECRET] = hash_secret(stored)
    auth = Auth(cast(Store, cast(Any, store)), configured)
    auth.load()
    return auth, store


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Store]:
    """One SQLite database, which the Auths of a test share as Studios share theirs."""
    store = SqliteStore(tmp_path / "auth.db", synchronous="NORMAL")
    store.open()
    yield store
    store.close()


def studio(store: Store) -> Auth:
    """The Auth of a Studio started on `store`, its console token configured."""
    auth = Auth(store, "token")
    auth.load()
    return auth


async def logged_in(auth: Auth) -> tuple[str, ConsoleSession]:
    login = await auth.login("token")
    assert login is not None
    return login


def test_a_configured_token_replaces_a_generated_one() -> None:
    """Both worked: the token generated for an earlier run stayed a way in."""
    auth, _ = auth_with("configured", "generated-earlier")
    assert auth.console_token_ok("configured")
    assert not auth.console_token_ok("generated-earlier")


def test_the_stored_token_works_without_a_configured_one() -> None:
    auth, _ = auth_with(None, "stored")
    assert auth.console_token_ok("stored")
    assert not auth.console_token_ok("other")
    assert not auth.console_token_ok("")


async def test_a_new_console_token_ends_the_sessions_of_the_old_one() -> None:
    """A session logged in with a rotated token lived on for its 12 hours."""
    auth, store = auth_with(None, "first")
    login = await auth.login("first")
    assert login is not None
    session_id, _ = login
    assert await auth.session(session_id) is not None
    store.secrets[CONSOLE_SECRET] = hash_secret("second")  # `aster-studio console-token`
    auth.refresh()
    assert await auth.session(session_id) is None
    renewed = await auth.login("second")
    assert renewed is not None and await auth.session(renewed[0]) is not None


async def test_a_session_outlives_a_restart(database: Store) -> None:
    """Sessions lived in the memory of the Studio: a restart logged every browser out."""
    session_id, session = await logged_in(studio(database))
    restarted = studio(database)
    assert await restarted.session(session_id) == session


async def test_the_store_keeps_only_the_hash_of_a_session_id(database: Store) -> None:
    """The id is the cookie: a copy of the database must let nobody in."""
    session_id, session = await logged_in(studio(database))
    (stored,) = database.console_sessions(0)
    assert stored == session and stored.id_hash == hash_secret(session_id) != session_id


async def test_each_session_has_its_own_csrf_token(database: Store) -> None:
    auth = studio(database)
    (_, one), (_, two) = await logged_in(auth), await logged_in(auth)
    assert one.csrf != two.csrf


async def test_a_login_on_one_studio_is_taken_by_another_before_its_refresh(
    database: Store,
) -> None:
    """Without sticky sessions a browser's next request goes to any Studio of a cluster."""
    one, two = studio(database), studio(database)
    session_id, session = await logged_in(one)
    taken = await two.session(session_id)
    assert taken is not None and taken.csrf == session.csrf


async def test_a_logout_on_one_studio_ends_the_session_on_another_at_its_refresh(
    database: Store,
) -> None:
    one, two = studio(database), studio(database)
    session_id, _ = await logged_in(one)
    assert await two.session(session_id) is not None
    await one.logout(session_id)
    assert await one.session(session_id) is None
    two.refresh()  # the Studio's every-second refresh
    assert await two.session(session_id) is None


async def test_a_session_ends_after_its_ttl(database: Store) -> None:
    now = [1_000_000]
    auth = Auth(database, "token", clock=lambda: now[0])
    auth.load()
    session_id, _ = await logged_in(auth)
    now[0] += SESSION_TTL_S * 1000 - 1
    assert await auth.session(session_id) is not None
    now[0] += 1
    assert await auth.session(session_id) is None
    auth.refresh()
    assert await Auth(database, "token", clock=lambda: now[0]).session(session_id) is None


async def test_an_unknown_session_id_is_read_from_the_store_once() -> None:
    """Every request of a browser with a stale cookie read the database again."""
    auth, store = auth_with("token", None)
    made_up = "x" * 43  # the shape of a real id
    assert await auth.session(made_up) is None
    assert await auth.session(made_up) is None
    assert store.session_reads == 1


async def test_a_malformed_session_id_is_refused_unread() -> None:
    auth, store = auth_with("token", None)
    for cookie in ("short", "x" * 44, "x" * 42 + "!"):
        assert await auth.session(cookie) is None
    assert store.session_reads == 0


async def test_lookups_past_the_limit_are_refused_unread() -> None:
    """A flood of made-up cookies holds at most MAX_LOOKUPS executor threads."""
    release = threading.Event()

    class Slow(Secrets):
        def get_console_session(self, id_hash: str, now_ms: int) -> ConsoleSession | None:
            session = super().get_console_session(id_hash, now_ms)  # counted first
            assert release.wait(10 * UNIT)
            return session

    auth, store = auth_with("token", None, Slow())
    waiting = [asyncio.create_task(auth.session(f"{n:043d}")) for n in range(MAX_LOOKUPS)]
    async with asyncio.timeout(10 * UNIT):
        while store.session_reads < MAX_LOOKUPS:
            await asyncio.sleep(0.01)
    assert await auth.session("y" * 43) is None  # refused at once, not read
    release.set()
    assert await asyncio.gather(*waiting) == [None] * MAX_LOOKUPS
    assert store.session_reads == MAX_LOOKUPS


async def test_a_refresh_read_before_a_logout_does_not_bring_the_session_back() -> None:
    """A refresh runs off the loop: one that listed the sessions before a logout here, and
    replaced them after it, would let the logged-out cookie in until the next refresh."""
    listed, release = threading.Event(), threading.Event()

    class Paused(Secrets):
        paused = False

        def console_sessions(self, now_ms: int) -> list[ConsoleSession]:
            sessions = super().console_sessions(now_ms)
            if self.paused:
                listed.set()
                assert release.wait(10 * UNIT)
            return sessions

    auth, store = auth_with("token", None, Paused())
    session_id, _ = await logged_in(auth)
    cast(Paused, store).paused = True
    refresh = asyncio.get_running_loop().run_in_executor(None, auth.refresh)
    assert await asyncio.to_thread(listed.wait, 10 * UNIT)
    await auth.logout(session_id)
    release.set()
    await refresh
    assert await auth.session(session_id) is None
