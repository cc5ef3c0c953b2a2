"""Tool control from the Studio: pause, resume and cancel of a running tool call (no network)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

from aster_studio_sdk import ToolAction, ToolCall, ToolCancelled, ToolControl, current_tool_call
from aster_studio_sdk.testing import InMemoryStudio
from tests.support.timing import UNIT

from .conftest import MakeClient, wait_until


def responses(memory: InMemoryStudio) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.event.items() if k in ("call_id", "action", "ok", "reason")}
        for e in memory.events_of("tool_control_response")
    ]


def started(client: Any, call: ToolCall) -> None:
    """Wait until the Studio has seen the call start (so a control can be sent to it)."""
    assert client.flush(5 * UNIT)


def test_controllable_call_says_so_in_its_snapshot(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True, cancelable=True):
        pass
    with client.tool_call("plain"):
        pass
    assert client.flush(5 * UNIT)
    crawl, plain = (e.event["call"] for e in memory.events_of("tool:start"))
    assert (crawl["pausable"], crawl["cancelable"]) == (True, True)
    assert "pausable" not in plain and "cancelable" not in plain


def test_pause_then_resume_holds_and_releases_the_call(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True) as call:
        started(client, call)
        memory.control(call.id, "pause")
        assert wait_until(lambda: call.paused)
        assert call.wait_if_paused(timeout=0.05) is True  # still paused: returned on timeout
        threading.Timer(0.1, lambda: memory.control(call.id, "resume")).start()
        begun = time.monotonic()
        assert call.wait_if_paused(timeout=5 * UNIT) is True
        assert 0.05 < time.monotonic() - begun < 5 * UNIT
        assert not call.paused
    assert client.flush(5 * UNIT)
    assert responses(memory) == [
        {"call_id": call.id, "action": "pause", "ok": True},
        {"call_id": call.id, "action": "resume", "ok": True},
    ]
    assert [e.event_type for e in memory.events_of("tool:end")] == ["tool:end"]
    assert [r.stage for r in memory.requests] == ["acknowledged", "acknowledged"]


def test_wait_if_paused_without_a_deadline_waits_for_resume(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """An infinite timeout raised OverflowError into the agent (threading's limit)."""
    client = make_client()
    with client.tool_call("crawl", pausable=True) as call:
        started(client, call)
        memory.control(call.id, "pause")
        assert wait_until(lambda: call.paused)
        threading.Timer(0.1, lambda: memory.control(call.id, "resume")).start()
        assert call.wait_if_paused(timeout=math.inf) is True
        assert not call.paused


def test_cancel_is_seen_by_the_call_and_reported_as_canceled(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", cancelable=True) as call:
        started(client, call)
        memory.control(call.id, "cancel", note="too slow")
        assert wait_until(lambda: call.cancelled)
        assert call.wait_if_paused() is False
        assert call.control_note == "too slow" and call.state == "canceling"
    assert client.flush(5 * UNIT)
    assert responses(memory) == [{"call_id": call.id, "action": "cancel", "ok": True}]
    (canceled,) = memory.events_of("tool:canceled")
    assert canceled.event["reason"] == "too slow"
    assert canceled.event["call"]["state"] == "canceled"
    assert memory.events_of("tool:end") == []


def test_cancel_releases_a_paused_call(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True, cancelable=True) as call:
        started(client, call)
        memory.control(call.id, "pause")
        assert wait_until(lambda: call.paused)
        threading.Timer(0.05, lambda: memory.control(call.id, "cancel")).start()
        assert call.wait_if_paused(timeout=5 * UNIT) is False


def test_raise_if_cancelled_ends_the_call_as_canceled(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(ToolCancelled), client.tool_call("crawl", cancelable=True) as call:
        started(client, call)
        call.raise_if_cancelled()  # not cancelled yet: nothing happens
        memory.control(call.id, "cancel")
        assert wait_until(lambda: call.cancelled)
        call.raise_if_cancelled()
    assert client.flush(5 * UNIT)
    assert len(memory.events_of("tool:canceled")) == 1
    assert memory.events_of("tool:error") == []


def test_control_the_call_does_not_offer_is_refused(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True) as call:
        started(client, call)
        memory.control(call.id, "cancel")
        assert client.flush(5 * UNIT)
        assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
        assert not call.cancelled
    (response,) = responses(memory)
    assert (response["ok"], response["reason"]) == (False, "the tool call is not cancelable")


def test_control_for_a_call_that_is_not_running_is_answered_not_ok(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("done", cancelable=True) as call:
        pass
    assert client.flush(5 * UNIT)
    memory.control(call.id, "cancel")
    assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
    assert responses(memory)[0]["ok"] is False
    assert memory.requests[0].stage == "acknowledged"


def test_handlers_run_on_the_control_thread_before_the_response(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    seen: list[tuple[ToolControl, str, int]] = []
    with client.tool_call("crawl", pausable=True, cancelable=True) as call:

        @call.on_control
        def handler(control: ToolControl) -> None:
            count = len(memory.events_of("tool_control_response"))
            seen.append((control, threading.current_thread().name, count))

        started(client, call)
        memory.control(call.id, "pause", note="lunch")
        assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
    control, thread, responses_before = seen[0]
    assert (control.action, control.note, control.call_id) == (ToolAction.PAUSE, "lunch", call.id)
    assert thread == "aster-studio-sdk-control" and responses_before == 0


def test_a_handler_that_raises_makes_the_response_not_ok(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", cancelable=True) as call:

        @call.on_control
        def refuse(control: ToolControl) -> None:
            raise RuntimeError("cannot stop mid-write")

        started(client, call)
        memory.control(call.id, "cancel")
        assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
    (response,) = responses(memory)
    assert response["ok"] is False and "cannot stop mid-write" in response["reason"]


def test_decorated_tool_finds_its_call_and_stops_on_cancel(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    running = threading.Event()

    @client.tool("crawl", cancelable=True)
    def crawl(pages: int) -> int:
        call = current_tool_call()
        assert call is not None
        done = 0
        running.set()
        while done < pages and not call.cancelled:
            done += 1
            time.sleep(0.01)
        return done

    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(crawl(10_000)))
    worker.start()
    assert running.wait(5 * UNIT) and client.flush(5 * UNIT)
    (start,) = memory.events_of("tool:start")
    memory.control(start.event["call"]["id"], "cancel")
    worker.join(5 * UNIT)
    assert result and result[0] < 10_000
    assert client.flush(5 * UNIT)
    assert len(memory.events_of("tool:canceled")) == 1
    assert current_tool_call() is None


def test_async_tool_awaits_while_paused(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()

    async def main() -> bool:
        async with client.tool_call("fetch", pausable=True) as call:
            await client.aflush(5 * UNIT)
            await asyncio.to_thread(memory.control, call.id, "pause")
            while not call.paused:
                await asyncio.sleep(0.005)
            resume = threading.Timer(0.05, memory.control, args=(call.id, "resume"))
            resume.start()
            return await call.await_if_paused(timeout=5 * UNIT)

    assert asyncio.run(main()) is True


def test_a_repeated_tool_control_is_applied_once(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True) as call:
        started(client, call)
        request = memory.control(call.id, "pause")
        message = {
            "type": "control",
            "event_type": "tool_control",
            "request_id": request.id,
            "call_id": call.id,
            "action": "pause",
        }
        for conn in memory._connections:
            conn.push(message)
        assert wait_until(lambda: client.stats().control_messages == 2)
        assert client.flush(5 * UNIT)
    assert len(responses(memory)) == 1


def test_a_tool_control_response_names_the_control_it_answers(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True) as call:
        started(client, call)
        request = memory.control(call.id, "pause")
        assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
    (response,) = memory.events_of("tool_control_response")
    assert response.event["request_id"] == request.id


def test_a_refused_tool_control_response_names_the_control_it_answers(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("done", cancelable=True) as call:
        pass
    assert client.flush(5 * UNIT)
    request = memory.control(call.id, "cancel")
    assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 1)
    (response,) = memory.events_of("tool_control_response")
    assert (response.event["ok"], response.event["request_id"]) == (False, request.id)


def test_pause_then_cancel_are_each_acknowledged_with_their_own_response(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.tool_call("crawl", pausable=True, cancelable=True) as call:
        started(client, call)
        pause, cancel = memory.control(call.id, "pause"), memory.control(call.id, "cancel")
        assert wait_until(lambda: len(memory.events_of("tool_control_response")) == 2)
    assert client.flush(5 * UNIT)
    assert pause.acknowledgement is not None and cancel.acknowledgement is not None
    assert (pause.acknowledgement["action"], cancel.acknowledgement["action"]) == (
        "pause",
        "cancel",
    )
