"""Process-wide hooks: fork handling for every live client, and multiprocessing exits.

Fork hooks are process-wide by nature, so this module keeps the one registry the SDK has: a
WeakSet, so a client that is no longer used can still be garbage-collected. (Exit handling needs
no registry: each client's `weakref.finalize` runs at exit.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import StudioClient

_clients: weakref.WeakSet[StudioClient] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False


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
