"""Fixtures for SDK unit tests: an in-memory Studio and fast, strict clients (no network)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aster_studio_sdk import DeliveryOptions, StudioClient
from aster_studio_sdk.testing import InMemoryStudio
from tests.support.timing import UNIT

FAST = DeliveryOptions(
    flush_interval=0.01,
    poll_interval=0.002,
    backoff_initial=0.005,
    backoff_max=0.05,
    connect_timeout=2 * UNIT,
    handshake_timeout=2 * UNIT,
    shutdown_timeout=2 * UNIT,
)

MakeClient = Callable[..., StudioClient]


@pytest.fixture
def memory() -> InMemoryStudio:
    return InMemoryStudio()


@pytest.fixture
def make_client(memory: InMemoryStudio) -> Iterator[MakeClient]:
    """Build strict clients on the in-memory Studio; close them all after the test."""
    clients: list[StudioClient] = []

    def make(
        agent_id: str = "agent-1", *, studio: InMemoryStudio | None = None, **kw: Any
    ) -> StudioClient:
        kw.setdefault("options", FAST)
        kw.setdefault("strict", True)
        client = (studio or memory).client(agent_id, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=0.5 * UNIT)


def wait_until(predicate: Callable[[], bool], timeout: float = 5 * UNIT) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; return its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()
