"""A PostgreSQL server for tests: its DSN (skipped when none runs; failed in CI), fresh schemas."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.services import missing

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@functools.lru_cache(maxsize=8)
def _unreachable(dsn: str) -> str | None:
    """Why the server at `dsn` cannot be used, or None if it can (asked once per DSN)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        from aster_studio.store.postgres import describe_dsn

        return f"PostgreSQL at {describe_dsn(dsn)} cannot be reached: {exc}".strip()
    return None


def postgres_dsn() -> str:
    """The test server's DSN (env ASTER_STUDIO_TEST_POSTGRES); skip the test if it cannot be
    reached, or fail it when CI is set: there PostgreSQL must be tested."""
    dsn = os.environ.get("ASTER_STUDIO_TEST_POSTGRES", DEFAULT_DSN)
    reason = _unreachable(dsn)
    if reason is not None:
        missing(reason)
    return dsn


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A new, uniquely named schema in the database at `dsn`, dropped (CASCADE) afterwards."""
    import psycopg
    from psycopg import sql

    name = f"aster_t_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        # Bounded: a Studio left running on the schema fails the drop rather than hanging it.
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
