"""Credentials: agent keys (stored hashed), the console token, and console login sessions (stored
by the hash of their ids, so every Studio on the database takes them, across restarts).

Auth is off only while no credential exists at all (no agent key, no console token), so the
user's original client works unchanged on a fresh loopback Studio. As soon as one exists, every
endpoint but the health checks and the login itself requires one.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

from .errors import StoreError
from .models import AgentKey, ConsoleSession
from .store import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "ask_"
CONSOLE_SECRET = "console_token"
SESSION_TTL_S = 12 * 3600

# The shape of a session id (`secrets.token_urlsafe(32)`): only one of this shape is looked for
# in the store when it is not in memory.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
# Store reads under way at once for session ids not in memory. Past it an id not in memory is
# refused unread: a flood of made-up cookies holds at most this many executor threads, and a
# browser it refuses is one logged in on another Studio less than a second ago.
MAX_LOOKUPS = 4
# Ids the store did not have, remembered so that a browser sending a stale cookie (another
# Studio's on the same host, whose cookies share the name) is not read for at every request.
# A miss is final (a cookie is handed out only once its session is stored, and ids are
# random), so the time only bounds how long an entry is kept, and the count how many.
MISSING_TTL_MS = 60_000
MISSING_MAX = 10_000


def hash_secret(secret: str) -> str:
    """Hash a high-entropy secret for storage (random tokens need no slow KDF)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_agent_key(name: str, pattern: str, now_ms: int) -> tuple[str, AgentKey]:
    """Return a new key (shown once) and the record that stores only its hash."""
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, AgentKey(key_id, name, pattern or "*", hash_secret(key), now_ms)


def new_console_token() -> str:
    return secrets.token_urlsafe(24)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Auth:
    """Decide who may connect: agents by key, people by console token or session cookie."""

    def __init__(
        self, store: Store, configured_token: str | None, clock: Callable[[], int] = _wall_ms
    ) -> None:
        self._store = store
        self._configured = configured_token
        self._clock = clock  # epoch ms
        self._stored_hash: str | None = None
        self._keys: dict[str, AgentKey] = {}
        # The store's sessions by id hash, read every second: a request's check is a lookup.
        self._sessions: dict[str, ConsoleSession] = {}
        self._missing: dict[str, int] = {}  # id hashes the store did not have: when (ms)
        self._lookups = 0  # store reads under way for ids not in memory
        # Changes made here to `_sessions` (logins, logouts, sessions read on a miss). A refresh
        # whose read began before one does not replace `_sessions`: it would bring back a
        # session logged out meanwhile. `_swap` makes its check and its replacing one step.
        self._changes = 0
        self._swap = threading.Lock()
        self.refused = 0  # requests and handshakes refused for want of a credential or origin

    # ---- state ----

    def load(self) -> str | None:
        """Read keys and the stored console token; return a newly generated token, if any.

        A console token is generated (and must be shown to the operator once) when agent keys
        exist but no console credential was configured: auth is then on, and people need a way in.
        """
        self.refresh()
        if self._configured is None and self._stored_hash is None and self._keys:
            token = new_console_token()
            made = hash_secret(token)
            # Another Studio of a cluster starting at the same moment may make one too: the
            # first stored is the token, shown by the Studio that made it.
            self._stored_hash = self._store.add_secret(
                CONSOLE_SECRET, made, int(time.time() * 1000)
            )
            return token if self._stored_hash == made else None
        return None

    def refresh(self) -> None:
        """Re-read keys, the stored token and the console sessions (blocking: run it off the
        event loop).

        The Studio calls this every second, so keys created or revoked with the CLI while the
        server runs take effect within about a second, and so do logins and logouts on the
        other Studios of a cluster.
        """
        with self._swap:
            changes = self._changes
        keys = {k.id: k for k in self._store.agent_keys() if k.revoked_at is None}
        stored = self._store.get_secret(CONSOLE_SECRET)
        sessions = {s.id_hash: s for s in self._store.console_sessions(self._clock())}
        with self._swap:
            self._keys, self._stored_hash = keys, stored
            if self._changes == changes:  # else the next refresh replaces them
                self._sessions = sessions

    @property
    def enabled(self) -> bool:
        return bool(self._configured or self._stored_hash or self._keys)

    # ---- agents ----

    def agent_key(self, presented: str | None) -> AgentKey | None:
        """Return the key record for a presented agent key, or None if it is not valid."""
        if not presented or not presented.startswith(KEY_PREFIX):
            return None
        key_id = presented[len(KEY_PREFIX) :].split("_", 1)[0]
        record = self._keys.get(key_id)
        if record is None or not hmac.compare_digest(record.hash, hash_secret(presented)):
            return None
        return record

    @staticmethod
    def allows(key: AgentKey | None, agent_id: str) -> bool:
        return key is None or key.pattern == "*" or fnmatch.fnmatchcase(agent_id, key.pattern)

    # ---- people ----

    def console_token_ok(self, presented: str | None) -> bool:
        """The console token: the configured one when there is one (it replaces a generated
        one), else the one stored (generated, or made with `aster-studio console-token`)."""
        current = self._credential()
        return (
            bool(presented)
            and current is not None
            and (hmac.compare_digest(current, hash_secret(presented or "")))
        )

    def _credential(self) -> str | None:
        """The hash of the console token in force."""
        if self._configured is not None:
            return hash_secret(self._configured)
        return self._stored_hash

    async def login(self, presented: str | None) -> tuple[str, ConsoleSession] | None:
        """Trade the console token for a new session: (its id, the cookie; the session).

        The session is stored before its id is returned, so every Studio on the database takes
        the cookie, and a restart keeps it.
        """
        credential = self._credential()
        if credential is None or not self.console_token_ok(presented):
            return None
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = ConsoleSession(
            hash_secret(session_id),
            secrets.token_urlsafe(24),
            credential,
            now + SESSION_TTL_S * 1000,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._store.add_console_session, session, now)
        self._keep(session)
        return session_id, session

    async def session(self, session_id: str | None) -> ConsoleSession | None:
        """The live session of this id: not expired, and logged in with the token in force
        (a new console token ends the sessions of the old one)."""
        if not session_id:
            return None
        id_hash = hash_secret(session_id)
        session = self._sessions.get(id_hash)
        if session is None:
            session = await self._look_up(session_id, id_hash)
        if (
            session is None
            or session.expires_at <= self._clock()
            or session.credential != self._credential()
        ):
            return None
        return session

    async def _look_up(self, session_id: str, id_hash: str) -> ConsoleSession | None:
        """Read a session not in memory from the store: one logged in on another Studio since
        the last refresh. Bounded (see SESSION_ID, MAX_LOOKUPS, MISSING_TTL_MS)."""
        now = self._clock()
        missed = self._missing.get(id_hash)
        if (
            (missed is not None and now - missed < MISSING_TTL_MS)
            or self._lookups >= MAX_LOOKUPS
            or not SESSION_ID.fullmatch(session_id)
        ):
            return None
        self._lookups += 1
        try:
            loop = asyncio.get_running_loop()
            session = await loop.run_in_executor(
                None, self._store.get_console_session, id_hash, now
            )
        except StoreError as exc:  # refused, as any session this Studio cannot vouch for
            log.debug("cannot read a console session: %s", exc)
            return None
        finally:
            self._lookups -= 1
        if session is None:
            self._missing.pop(id_hash, None)  # re-inserted last: the oldest stay first
            if len(self._missing) >= MISSING_MAX:
                del self._missing[next(iter(self._missing))]
            self._missing[id_hash] = now
            return None
        self._keep(session)
        return session

    async def logout(self, session_id: str | None) -> None:
        """End the session of this id here at once, and on the other Studios of a cluster at
        their next refresh (within about a second)."""
        if not session_id:
            return
        id_hash = hash_secret(session_id)
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._store.delete_console_session, id_hash)
        finally:
            with self._swap:
                self._changes += 1
                self._sessions.pop(id_hash, None)

    def _keep(self, session: ConsoleSession) -> None:
        with self._swap:
            self._changes += 1
            self._sessions[session.id_hash] = session
