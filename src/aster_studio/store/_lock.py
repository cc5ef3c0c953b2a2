"""One writer per database: an advisory lock in a file beside it, and on the file itself.

A Studio's writer keeps state in memory that the file alone does not hold (the events not yet
listed by agent and session, the posting round under way), and its open finishes or undoes
what an earlier run left. A second process opening the same file as a writer would undo the
first one's round under it, and reads by agent would then miss events. So the writer takes
an exclusive `flock` on `<database>.lock` for as long as it is open; the holder's pid is in the
file, for the message. The lock file is beside the database's real path (symlinks resolved):
beside the path as given, a symlink to the database had a lock file of its own, and two
Studios wrote the same file. A hard link (or a bind mount) is another path to the same file
that no resolving finds, so on Linux the writer also takes an exclusive `flock` on the
database itself: one lock whatever the path. (Linux keeps `flock` apart from the `fcntl`
locks SQLite takes; elsewhere the two may interact, and only the lock file is taken.) The
locks go with the process, however it ends. On Windows, which has no `flock`, nothing is
locked.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..errors import DatabaseInUse, DatabaseInUseElsewhere, StoreError

log = logging.getLogger(__name__)

_LOCK_FILE_ITSELF = sys.platform.startswith("linux")


class WriterLock:
    """The writer lock of the database at `db`."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._fd: int | None = None  # the lock file's
        self._file_fd: int | None = None  # the database's own, locked too (Linux)

    def _in_use(self, by: str) -> str:
        return (
            f"database {self.db} is in use by another Aster Studio{by}: stop it, or give "
            "this one a database of its own with --db"
        )

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse naming the process that holds it."""
        if sys.platform == "win32" or self._fd is not None:
            return
        import fcntl

        real = Path(os.path.realpath(self.db))
        path = real.with_name(real.name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DatabaseInUse(self._in_use(by)) from None
        except OSError as exc:  # a file system without locks: run, unguarded, and say so
            os.close(fd)
            log.warning(
                "cannot lock %s (%s): a second Studio on it would not be stopped", path, exc
            )
            return
        if _LOCK_FILE_ITSELF:
            try:
                self._file_fd = self._lock_database(real)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def _lock_database(self, real: Path) -> int:
        """Lock the database file itself (created empty if new, as SQLite would), for the
        paths that reach it without the same lock file: hard links, bind mounts."""
        import fcntl

        try:
            fd = os.open(real, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open database {self.db}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Closing a descriptor of the file drops the `fcntl` locks this process holds on
            # it; a process refused here has no connection of its own on it (a server checks
            # before it opens anything, the command line opens beside it after).
            os.close(fd)
            raise DatabaseInUseElsewhere(
                self._in_use(" through another path to the file (a hard link?)")
            ) from None
        return fd

    def release(self, *, file_in_use: bool = False) -> None:
        """Let the lock go (closing the lock file does); the file stays, for the next holder.

        `file_in_use`: a connection to the database is still open in this process. The
        database's own descriptor is then only unlocked, not closed, since closing it would
        drop the `fcntl` locks SQLite holds for that connection; it goes with the process.
        """
        if self._file_fd is not None:
            import fcntl

            fcntl.flock(self._file_fd, fcntl.LOCK_UN)
            if not file_in_use:
                os.close(self._file_fd)
            self._file_fd = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["WriterLock"]
