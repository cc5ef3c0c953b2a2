"""A Redis server for the cluster tests: its URL (skipped when none runs; failed in CI)."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

from tests.support.services import missing

DEFAULT_URL = "redis://127.0.0.1:6379/0"


@functools.lru_cache(maxsize=8)
def _unreachable(url: str) -> str | None:
    """Why the Redis at `url` cannot be used, or None if it answers PING (asked once per URL)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        return f"ASTER_STUDIO_TEST_REDIS must be a redis://host:port/db URL, got {url!r}"
    where = f"{parts.hostname}:{parts.port or 6379}"
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"Redis at {where} cannot be reached: {exc}"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {where} answered PING with {reply!r}"
    return None


def redis_url() -> str:
    """The test Redis's URL (env ASTER_STUDIO_TEST_REDIS); skip the test if it does not answer,
    or fail it when CI is set: there the cluster mode must be tested."""
    url = os.environ.get("ASTER_STUDIO_TEST_REDIS", DEFAULT_URL)
    reason = _unreachable(url)
    if reason is not None:
        missing(reason)
    return url
