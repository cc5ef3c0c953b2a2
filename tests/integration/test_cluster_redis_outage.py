"""A cluster whose Redis goes away: every console still gets every event (read from the
database meanwhile), and the Studios join again when Redis is back.

A Redis server of its own (`redis-server` on a free port), so that stopping it stops nothing
else; skipped with the reason when there is no `redis-server`, failed instead under CI.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_live_stream import Stream
from tests.support.agent import RawAgent, event, register
from tests.support.api import wait_for
from tests.support.openapi import problems, response_schema
from tests.support.postgres import fresh_schema, postgres_dsn
from tests.support.server import StudioProcess
from tests.support.services import missing
from tests.support.timing import UNIT


class RedisServer:
    """`redis-server` on a port of its own, keeping nothing on disk."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10 * UNIT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        missing(reason)
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fetch(studio: StudioProcess, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{studio.http_url}{path}", timeout=5) as response:
        return dict(json.loads(response.read()))


def cluster_health(studio: StudioProcess) -> dict[str, Any]:
    return dict(fetch(studio, "/healthz")["cluster"])


def test_events_reach_every_console_while_redis_is_away_and_after(redis: RedisServer) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        db = f"{dsn}?schema={schema}"
        one = StudioProcess(db, args=("--cluster", redis.url)).start()
        two = StudioProcess(db, args=("--cluster", redis.url)).start()
        try:
            wait_for(lambda: cluster_health(one), lambda c: c["peers"], timeout=10 * UNIT)
            with Stream(one) as stream, RawAgent(two.agent_url) as agent:
                stream.subscribe(batch=True)
                agent.request(register("far"))

                def send(first: int) -> None:
                    for n in range(first, first + 5):
                        agent.send(event("far", "text_chunk", delta=str(n)))
                    agent.request({"type": "ping"})  # read, so queued for the writer

                send(0)
                before = stream.events(5)
                redis.stop()
                send(5)
                # Not on the channel: read from the database within a few seconds.
                during = stream.events(5, timeout=10 * UNIT)
                assert cluster_health(one)["connected"] is False
                redis.start()
                wait_for(
                    lambda: (cluster_health(one), cluster_health(two)),
                    lambda h: h[0]["connected"] and h[1]["connected"] and h[0]["peers"],
                    timeout=15 * UNIT,
                )
                send(10)
                after = stream.events(5, timeout=10 * UNIT)
            got = before + during + after
            assert [e["data"]["delta"] for e in got] == [str(n) for n in range(15)]
            cursors = [e["cursor"] for e in got]
            assert cursors == sorted(set(cursors))
            assert cluster_health(one)["filled_events"] >= 5
            document = fetch(one, "/openapi.json")
            schema = response_schema(document, "get", "/healthz", 200, "application/json")
            assert problems(fetch(one, "/healthz"), schema, document) == []
        finally:
            one.stop()
            two.stop()
