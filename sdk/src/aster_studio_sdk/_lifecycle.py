"""Process-wide hooks: fork handling for every live client, and multiprocessing exits.

Fork hooks and exit are process-wide by nature, so this module keeps the SDK's registries,
weak ones, so that a client no longer used can still be garbage-collected: the live clients
(for fork handling) and the workers their clients did not close (closed together at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._control import wait_seconds

if TYPE_CHECKING:
    from ._client import StudioClient
    from ._worker import Worker

_clients: weakref.WeakSet[StudioClient] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False
# Workers whose client has not closed them, with the client's shutdown timeout. A worker runs
# on its own thread, which keeps it alive until it is done; then it leaves on its own.
_unclosed: weakref.WeakKeyDictionary[Worker, float] = weakref.WeakKeyDictionary()
_exit_registered = False


def close_at_exit(worker: Worker, timeout: float) -> None:
    """Have the interpreter's exit close `worker` if its client has not by then."""
    global _exit_registered
    with _install_lock:
        if not _exit_registered:
            atexit.register(_close_all_at_exit)
            _exit_registered = True
        _unclosed[worker] = timeout


def _close_all_at_exit() -> None:
    """Close every worker still running, all at once, against one deadline: ten forgotten
    clients take one shutdown timeout at exit, not ten in turn."""
    # From now on the clients report nothing: an event made later (by an exit hook that runs
    # after this one, or a daemon thread still running) would never be sent, so it is counted
    # as dropped and logged, as after close().
    for client in list(_clients):
        with contextlib.suppress(Exception):  # never break the exit over reporting
            client._stop_at_exit()
    with _install_lock:
        pending = [(w, t) for w, t in list(_unclosed.items()) if w.started and not w.done.is_set()]
        _unclosed.clear()
    if not pending:
        return
    now = time.monotonic()
    waits = [wait_seconds(timeout) for _, timeout in pending]
    for (worker, _), wait in zip(pending, waits, strict=True):
        worker.request_close(math.inf if wait is None else now + wait)
    # No deadline (shutdown_timeout=inf) waits for delivery, as close(None) does.
    longest = None if None in waits else max(w for w in waits if w is not None)
    deadline = math.inf if longest is None else now + longest
    for worker, _ in pending:
        left = None if longest is None else max(deadline - time.monotonic(), 0.0)
        if not worker.done.wait(left):
            worker.abort()


def track(client: StudioClient) -> None:
    """Register a live client for fork handling."""
    global _installed
    with _install_lock:
        if not _installed:
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)
            _installed = True
        _clients.add(client)


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()
    _unclosed.clear()  # the parent's workers: their threads did not come along
    for client in list(_clients):
        with contextlib.suppress(Exception):  # never break the child over reporting
            client._after_fork_in_child()


def close_at_multiprocessing_exit(shutdown: Callable[[], None]) -> None:
    """Run `shutdown` when a multiprocessing child ends (it exits with os._exit, not atexit)."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    with contextlib.suppress(Exception):
        util.Finalize(None, shutdown, exitpriority=10)
