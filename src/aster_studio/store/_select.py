"""Which backend a database URL names, and the store for it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..config import Settings, is_postgres
from ..errors import ConfigError
from ._base import Store


def postgres_target(url: str) -> tuple[str, str | None]:
    """Split our `schema` parameter off a PostgreSQL URL: (the URL libpq gets, the schema).

    `postgresql://user@host:5432/dbname?schema=aster` keeps the Studio's tables in the schema
    `aster` (created if missing); every other parameter is libpq's own (`sslmode`, ...).
    """
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for name, value in params if name == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise ConfigError("a PostgreSQL URL takes one non-empty `schema` parameter")
    query = urlencode([(name, value) for name, value in params if name != "schema"])
    return urlunsplit(parts._replace(query=query)), (schemas[0] if schemas else None)


def store_for(settings: Settings) -> Store:
    """The store `settings.db` names: SQLite (a path, `sqlite:///path`, the default) or
    PostgreSQL (`postgresql://...`)."""
    if not is_postgres(settings.db):
        from .sqlite import SqliteStore

        return SqliteStore(settings.db_path, synchronous=settings.synchronous)
    try:
        from .postgres import PostgresStore
    except ImportError as exc:  # psycopg is an optional dependency
        raise ConfigError(
            f"a PostgreSQL database needs psycopg: pip install 'aster-studio[postgres]' ({exc})"
        ) from exc
    dsn, schema = postgres_target(settings.db)
    return PostgresStore(dsn, schema=schema, shared=settings.cluster is not None)
