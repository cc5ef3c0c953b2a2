"""The in-memory Studio as the person who decides: scripted and manual decisions for tests."""

from __future__ import annotations

import time

import pytest

from aster_studio_sdk.testing import InMemoryStudio
from tests.support.timing import UNIT

from .conftest import MakeClient


def test_requests_wait_as_pending_until_decided_by_hand(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    request = client.request_permission(
        {"id": "c", "name": "rm"}, timeout=5 * UNIT, on_decision=lambda d: None
    )
    found = memory.wait_for_request("permission", key="c", timeout=5 * UNIT)
    assert [r.key for r in memory.pending("permission")] == ["c"]
    assert found.request["name"] == "rm" and found.stage == "pending"
    memory.approve(note="fine")  # the oldest pending one
    assert memory.wait_for_acknowledgement(found, 5 * UNIT)["decision"] == "allow"
    assert request.done() and memory.pending() == []


def test_a_policy_returning_none_leaves_the_request_to_the_test(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions(lambda call: None)
    client = make_client()
    client.request_permission({"id": "c"}, timeout=5 * UNIT, on_decision=lambda d: None)
    assert memory.wait_for_request(timeout=5 * UNIT).status == "pending"


def test_deciding_an_expired_request_raises(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.request_permission({"id": "c"}, timeout=0.05)
    assert client.flush(5 * UNIT)
    time.sleep(0.06)
    with pytest.raises(LookupError, match="expired"):
        memory.approve("c")
    assert memory.requests[0].stage == "expired"


def test_tool_control_needs_a_connected_agent(memory: InMemoryStudio) -> None:
    with pytest.raises(LookupError):
        memory.control("call_1", "cancel")
    with pytest.raises(ValueError):
        memory.control("call_1", "explode")


def test_waiting_for_a_request_that_never_comes_times_out(memory: InMemoryStudio) -> None:
    with pytest.raises(TimeoutError):
        memory.wait_for_request("question", timeout=0.05)
