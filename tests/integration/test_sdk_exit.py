"""Interpreter exit: pending events are delivered without `close`, and exit never hangs."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import textwrap
import time
import warnings

from aster_studio_sdk import StudioClient
from tests.support.api import get
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

SCRIPT = textwrap.dedent(
    """
    import sys
    from aster_studio_sdk import StudioClient

    client = StudioClient("exiter", url=sys.argv[1], enabled=True, strict=True)
    with client.session("last-words") as s:
        for i in range(2000):
            s.event("progress", "tick", i=i)
    # no close(): the exit handler delivers what is pending, within shutdown_timeout (2 s)
    """
)


def run(url: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
    )
    return done, time.monotonic() - start


def test_exit_without_close_delivers_pending_events(studio: StudioProcess) -> None:
    done, _ = run(studio.url)
    assert done.returncode == 0, done.stderr
    data = get(studio.http_url, "/v1/dashboard/events/count?agent_id=exiter")
    assert data["count"] == 2000


def test_exit_with_the_studio_down_is_not_held_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    baseline, base_time = run("ws://127.0.0.1:1")  # warms caches; also a dead address
    done, took = run(f"ws://127.0.0.1:{port}")
    assert baseline.returncode == 0 and done.returncode == 0, done.stderr
    # interpreter start + at most shutdown_timeout (2 s) + slack
    assert took < 2.0 + 3 * UNIT


def _child_reports(client: StudioClient) -> None:
    with client.session("child-session") as s:
        for i in range(500):
            s.event("progress", "tick", i=i)
    # no flush: multiprocessing ends the child with os._exit; the SDK still delivers


MANY = textwrap.dedent(
    """
    import gc, sys, time
    from aster_studio_sdk import StudioClient

    clients = [StudioClient(f"c{i}", url=sys.argv[1], enabled=True) for i in range(5)]
    for client in clients:
        client.text("pending")
    forgotten = StudioClient("gone", url=sys.argv[1], enabled=True)
    forgotten.text("pending")
    del forgotten
    started = time.monotonic()
    gc.collect()
    print(f"collect {time.monotonic() - started:.3f}")
    # no close(): exit closes all six at once, within one shutdown_timeout (2 s)
    """
)


def test_exit_closes_every_unclosed_client_at_once_and_collection_never_waits() -> None:
    """Each unclosed client's exit handler waited its 2 s in turn (ten clients: 20 s), and a
    client collected unclosed froze the collecting thread 2 s, an event loop's among them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MANY, f"ws://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    collect = float(done.stdout.split()[-1])
    assert collect < 0.5 * UNIT, done.stdout
    assert took < 2.0 + 3 * UNIT, took  # one shutdown_timeout, not six


def test_multiprocessing_fork_child_delivers_before_it_exits(studio: StudioProcess) -> None:
    client = StudioClient("forker", url=studio.url, enabled=True, strict=True)
    try:
        client.text("parent")
        assert client.flush(5 * UNIT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            child = multiprocessing.get_context("fork").Process(
                target=_child_reports, args=(client,)
            )
            child.start()
        child.join(20 * UNIT)
        assert child.exitcode == 0
        data = get(studio.http_url, "/v1/dashboard/events/count?agent_id=forker")
        assert data["count"] == 501  # the parent's one event and the child's 500, once each
    finally:
        client.close(2 * UNIT)
