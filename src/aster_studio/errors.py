"""The server's exception tree.

StudioError
 +-- ConfigError         bad settings or command-line options
 +-- StoreError          the storage backend failed
 |    +-- StoreUnavailable  the database cannot be reached now; the same write may succeed
 |    |                     later (kept and retried, never dropped)
 |    +-- MigrationError the database schema is newer than this release or broken
 |    +-- DatabaseInUse  another Studio writes to this database
 |         +-- DatabaseInUseElsewhere  ... through another path to its file (a hard link)
 +-- NotFound            a requested record does not exist (REST 404)
 +-- BadRequest          a REST request is malformed (REST 400)
"""

from __future__ import annotations


class StudioError(Exception):
    """Root of every error the Studio raises on purpose."""


class ConfigError(StudioError):
    """Settings or options are invalid."""


class StoreError(StudioError):
    """The storage backend failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (its connection was lost, it refuses connections, or
    another writer holds it meanwhile): nothing was written, and the same write may succeed
    later. Writers keep what they hold and retry; they drop nothing."""


class MigrationError(StoreError):
    """The database schema cannot be brought to this release's version."""


class DatabaseInUse(StoreError):
    """Another process, a running Studio, holds the database's writer lock."""


class DatabaseInUseElsewhere(DatabaseInUse):
    """A running Studio holds the database through another path to its file (a hard link,
    a bind mount). SQLite names the write-ahead log after the path, so a connection through
    this one would not see that Studio's log: nothing may write beside it from here."""


class NotFound(StudioError):
    """A requested record does not exist."""


class BadRequest(StudioError):
    """A request is malformed; the message says which part."""
