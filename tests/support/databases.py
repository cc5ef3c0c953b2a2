"""The databases of the tests' Studios: SQLite files, or PostgreSQL schemas.

`ASTER_STUDIO_TEST_BACKEND=postgres` gives every Studio started through these a fresh schema
of the test PostgreSQL database (tests/support/postgres.py) instead of a file, so the same
integration tests check both backends (`make test` runs them both ways).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

BACKEND = os.environ.get("ASTER_STUDIO_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise ValueError(f"ASTER_STUDIO_TEST_BACKEND must be sqlite or postgres, got {BACKEND!r}")


class Databases:
    """Fresh databases on demand; the schemas made are dropped by `close`, after the Studios
    on them have stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made: dict[str, Path | str] = {}
        self._schemas = ExitStack()

    def __call__(self, name: str) -> Path | str:
        """The database called `name`, new at its first call: `name`.db in the folder, or
        a new schema's URL."""
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def _make(self, name: str) -> Path | str:
        if BACKEND == "sqlite":
            return self.folder / f"{name}.db"
        from .postgres import fresh_schema, postgres_dsn

        dsn = postgres_dsn()
        schema = self._schemas.enter_context(fresh_schema(dsn))
        return f"{dsn}?schema={schema}"

    def close(self) -> None:
        self._schemas.close()
