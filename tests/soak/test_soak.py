"""Long runs for `make soak` (not in `make test`): bounded in count and time, loopback only.

SOAK_SCALE multiplies the work (default 1 here; `make soak` sets 10).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path

import psutil
import pytest

from aster_studio_sdk import DeliveryOptions, StudioClient
from tests.integration.test_frame_fuzz import garbage, handshake
from tests.integration.test_sdk_delivery import stored, ticks
from tests.support.agent import RawAgent, register
from tests.support.api import call
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

SCALE = int(os.environ.get("SOAK_SCALE", "1"))

pytestmark = pytest.mark.soak


def test_long_frame_fuzz_keeps_memory_bounded(studio: StudioProcess) -> None:
    rng = random.Random(7)
    assert studio.proc is not None
    server = psutil.Process(studio.proc.pid)
    rounds = 2_000 * SCALE
    deadline = time.monotonic() + 60 * SCALE
    with RawAgent(studio.agent_url) as witness:
        witness.request(register("witness"))
        baseline = server.memory_info().rss
        for round_no in range(rounds):
            assert time.monotonic() < deadline
            sock = handshake(studio.port)
            with contextlib.suppress(OSError):  # the server may hang up first
                sock.sendall(garbage(rng))
            sock.close()
            if round_no % 500 == 0:
                assert witness.request({"type": "ping"}) == {"type": "pong"}
        grown = server.memory_info().rss - baseline
    assert call(studio.http_url, "/healthz")[0] == 200
    assert grown < 64 * 1024 * 1024, f"grew {grown / 1e6:.1f} MB over {rounds} rounds"


def test_repeated_kill_9_keeps_every_acked_event_exactly_once(tmp_path: Path) -> None:
    server = StudioProcess(tmp_path / "soak.db").start()
    options = DeliveryOptions(flush_interval=0.02, backoff_initial=0.02, backoff_max=0.25)
    client = StudioClient("soak-agent", url=server.url, enabled=True, strict=True, options=options)
    count = 0
    stop = threading.Event()

    def emit() -> None:
        nonlocal count
        with client.session("session-0") as s:
            while not stop.is_set():
                s.event("progress", "tick", thread=0, i=count)
                count += 1
                if count % 50 == 0:
                    time.sleep(0.001)

    emitter = threading.Thread(target=emit)
    emitter.start()
    try:
        for _ in range(3 * SCALE):
            time.sleep(random.uniform(0.2, 1.0))
            server.kill()
            time.sleep(random.uniform(0.05, 0.5))
            server.start()
        time.sleep(0.5)
    finally:
        stop.set()
        emitter.join(30 * UNIT)
    assert client.flush(60 * UNIT)
    # The emitter runs flat out: while the Studio is down, a slow machine fills the SDK's
    # bounded queue and it drops the newest events by design (counted). Everything it kept
    # must be stored exactly once, in order.
    dropped = client.stats().dropped
    client.close(5 * UNIT)
    try:
        seen = [i for _, i in ticks(stored(server, "soak-agent"))]
        assert len(seen) == len(set(seen)), "duplicates stored"
        assert seen == sorted(seen), "stored out of order"
        assert len(seen) == count - dropped, f"lost {count - dropped - len(seen)} kept events"
    finally:
        server.stop()
