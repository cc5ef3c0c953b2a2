"""One writer per database: an advisory lock in a file beside it.

A Studio's writer keeps state in memory that the file alone does not hold (the events not yet
listed by agent and session, the posting round under way), and its open finishes or undoes
what an earlier run left. A second process opening the same file as a writer would undo the
first one's round under it, and reads by agent would then miss events. So the writer takes
an exclusive `flock` on `<database>.lock` for as long as it is open; the holder's pid is in the
file, for the message. The lock goes with the process, however it ends. On Windows, which has
no `flock`, nothing is locked.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..errors import DatabaseInUse, StoreError

log = logging.getLogger(__name__)


class WriterLock:
    """The writer lock of the database at `db`."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = db.with_name(db.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse naming the process that holds it."""
        if sys.platform == "win32" or self._fd is not None:
            return
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DatabaseInUse(
                f"database {self.db} is in use by another Aster Studio{by}: stop it, or give "
                "this one a database of its own with --db"
            ) from None
        except OSError as exc:  # a file system without locks: run, unguarded, and say so
            os.close(fd)
            log.warning(
                "cannot lock %s (%s): a second Studio on it would not be stopped", self.path, exc
            )
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the file does); the file stays, for the next holder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["WriterLock"]
