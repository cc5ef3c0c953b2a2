"""Console credentials: which token is in force, and sessions that end with it."""

from __future__ import annotations

from typing import Any, cast

from aster_studio.auth import CONSOLE_SECRET, Auth, hash_secret
from aster_studio.models import AgentKey
from aster_studio.store import Store


class Secrets:
    """The part of a store Auth reads: keys (none here) and the stored console token."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}

    def agent_keys(self) -> list[AgentKey]:
        return []

    def get_secret(self, name: str) -> str | None:
        return self.secrets.get(name)

    def set_secret(self, name: str, value: str, ts: int) -> None:
        self.secrets[name] = value


def auth_with(configured: str | None, stored: str | None) -> tuple[Auth, Secrets]:
    store = Secrets()
    if stored is not None:
        store.secrets[CONSOLE_SECRET] = hash_secret(stored)
    auth = Auth(cast(Store, cast(Any, store)), configured)
    auth.load()
    return auth, store


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


def test_a_new_console_token_ends_the_sessions_of_the_old_one() -> None:
    """A session logged in with a rotated token lived on for its 12 hours."""
    auth, store = auth_with(None, "first")
    login = auth.login("first")
    assert login is not None
    session_id, _ = login
    assert auth.session(session_id) is not None
    store.secrets[CONSOLE_SECRET] = hash_secret("second")  # `aster-studio console-token`
    auth.refresh()
    assert auth.session(session_id) is None
    renewed = auth.login("second")
    assert renewed is not None and auth.session(renewed[0]) is not None
