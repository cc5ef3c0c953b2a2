"""Counting and rate-limited logging of the SDK's own trouble; never raising into the agent."""

from __future__ import annotations

import logging
import threading
import time

from ._errors import InternalError

logger = logging.getLogger("aster_studio_sdk")


class Diagnostics:
    """Drop and internal-error counters shared by agent threads and the worker."""

    def __init__(self, *, strict: bool, log_interval: float) -> None:
        self.strict = strict
        self._log_interval = log_interval
        # Taken only on rare paths (queue full, SDK failure), never per event.
        self._lock = threading.Lock()
        self.dropped = 0
        self.internal_errors = 0
        self._first_error: BaseException | None = None
        self._last_logged: dict[str, float] = {}

    def drop(self, count: int = 1) -> None:
        """Count events discarded by the queue policy."""
        with self._lock:
            self.dropped += count

    def should_log(self, key: str) -> bool:
        """Return whether a message of this kind may be logged now (once per interval)."""
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self._log_interval:
                return False
            self._last_logged[key] = now
            return True

    def warn(self, key: str, msg: str, *args: object) -> None:
        """Log a warning at most once per interval per key."""
        if self.should_log(key):
            logger.warning(msg, *args)

    def error(self, key: str, msg: str, *args: object) -> None:
        """Log an error at most once per interval per key (trouble the user must fix)."""
        if self.should_log(key):
            logger.error(msg, *args)

    def internal(self, where: str, exc: BaseException) -> None:
        """Record an SDK failure: count it, log it (rate-limited), remember the first."""
        with self._lock:
            self.internal_errors += 1
            if self._first_error is None:
                self._first_error = exc
        if self.should_log("internal:" + where):
            logger.error(
                "aster-studio-sdk internal error in %s (the agent is unaffected)",
                where,
                exc_info=exc,
            )

    def raise_if_strict(self) -> None:
        """In strict mode, raise the first recorded internal error so tests fail on SDK bugs."""
        if self.strict and self._first_error is not None:
            first = self._first_error
            raise InternalError(f"aster-studio-sdk internal error: {first!r}") from first

    def reset_after_fork(self) -> None:
        """Start the child afresh: a new lock (another thread may have held the parent's at
        fork time), and none of the parent's drops and errors, which are the parent's to
        report (the child reported them as its own)."""
        self._lock = threading.Lock()
        self.dropped = 0
        self.internal_errors = 0
        self._first_error = None
        self._last_logged = {}
