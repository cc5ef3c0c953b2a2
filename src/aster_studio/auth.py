"""Credentials: agent keys (stored hashed), the console token, and console login sessions.

Auth is off only while no credential exists at all (no agent key, no console token), so the
user's original client works unchanged on a fresh loopback Studio. As soon as one exists, every
endpoint but the health checks and the login itself requires one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from .models import AgentKey
from .store import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "ask_"
CONSOLE_SECRET = "console_token"
SESSION_TTL_S = 12 * 3600


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


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A logged-in browser: its CSRF token, when it expires, and the credential it logged in
    with (the token's hash): a session outlives neither."""

    csrf: str
    expires_at: float
    credential: str = ""


class Auth:
    """Decide who may connect: agents by key, people by console token or session cookie."""

    def __init__(self, store: Store, configured_token: str | None) -> None:
        self._store = store
        self._configured = configured_token
        self._stored_hash: str | None = None
        self._keys: dict[str, AgentKey] = {}
        self._sessions: dict[str, ConsoleSession] = {}
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
        """Re-read keys and the stored token (blocking: run it off the event loop).

        The Studio calls this every second, so keys created or revoked with the CLI while the
        server runs take effect within about a second.
        """
        keys = {k.id: k for k in self._store.agent_keys() if k.revoked_at is None}
        stored = self._store.get_secret(CONSOLE_SECRET)
        self._keys, self._stored_hash = keys, stored

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

    def login(self, presented: str | None) -> tuple[str, ConsoleSession] | None:
        if not self.console_token_ok(presented):
            return None
        self._expire()
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(
            secrets.token_urlsafe(24), time.time() + SESSION_TTL_S, self._credential() or ""
        )
        self._sessions[session_id] = session
        return session_id, session

    def session(self, session_id: str | None) -> ConsoleSession | None:
        """The live session of this id: not expired, and logged in with the token in force
        (a new console token ends the sessions of the old one)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if (
            session is None
            or session.expires_at < time.time()
            or session.credential != self._credential()
        ):
            self._sessions.pop(session_id, None)
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.time()
        for sid in [s for s, v in self._sessions.items() if v.expires_at < now]:
            del self._sessions[sid]
