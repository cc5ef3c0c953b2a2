"""The public client: event helpers, sessions, tool calls, disabled mode, strict mode."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from aster_studio_sdk import (
    Connection,
    InternalError,
    Session,
    StudioClient,
    ToolCall,
    current_tool_call,
)
from aster_studio_sdk import _client as client_module
from aster_studio_sdk.testing import InMemoryStudio, MemoryTransport
from tests.support.timing import UNIT

from .conftest import FAST, MakeClient, wait_until


def test_quick_start_example_is_stored(memory: InMemoryStudio, make_client: MakeClient) -> None:
    studio = make_client(
        "writer-1", name="Writing Agent", model="claude-3-5-sonnet", capabilities=["writing"]
    )
    with studio.session("session-456") as s:
        s.state("working")
        s.text("Hello, ")
        s.token_usage(input_tokens=100, output_tokens=50, model="claude-3-5-sonnet")
        s.error("API call failed", severity="error", phase="model")
        s.event("monitor", "step_complete", step=3, duration_ms=812)
    assert studio.close(timeout=5 * UNIT)
    types = [(e.channel, e.event_type) for e in memory.events]
    assert types == [
        ("monitor", "state_changed"),
        ("progress", "text_chunk"),
        ("monitor", "token_usage"),
        ("monitor", "error"),
        ("monitor", "step_complete"),
    ]
    assert all(e.session_id == "session-456" for e in memory.events)
    register = memory.agents["writer-1"]
    assert (register.name, register.model, register.capabilities) == (
        "Writing Agent",
        "claude-3-5-sonnet",
        ("writing", "control"),  # "control": the Studio may send decisions (docs/control.md)
    )
    assert memory.sessions["session-456"].status == "completed"


def test_event_fields_are_kept_as_sent(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    client.token_usage(10, 5, model="m", cache_read_input_tokens=3, reasoning_tokens=2)
    client.event("monitor", "custom_thing", nested={"a": [1, 2]}, flag=True)
    assert client.flush(5 * UNIT)
    usage, custom = memory.events
    assert usage.event["input_tokens"] == 10 and usage.event["cache_read_input_tokens"] == 3
    assert usage.event["model"] == "m" and "total_tokens" not in usage.event
    assert custom.event["nested"] == {"a": [1, 2]} and custom.event["flag"] is True
    assert isinstance(custom.event["timestamp"], int)  # epoch milliseconds
    assert custom.session_id is None


def test_session_failed_when_exception_escapes(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="boom"), client.session("s") as s:
        s.text("x")
        raise ValueError("boom")
    assert client.flush(5 * UNIT)
    assert memory.sessions["s"].status == "failed"
    (error,) = memory.events_of("error")
    assert error.event["phase"] == "lifecycle" and "boom" in error.event["message"]


def test_session_interrupted_on_keyboard_interrupt(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(KeyboardInterrupt), client.session("s"):
        raise KeyboardInterrupt
    assert client.flush(5 * UNIT)
    assert memory.sessions["s"].status == "interrupted"


def test_close_ends_open_sessions_and_unregisters(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.session("left-open").text("x")
    assert client.close(5 * UNIT)
    assert memory.sessions["left-open"].status == "interrupted"
    assert "agent-1" in memory.offline


def test_events_after_close_are_ignored(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    assert client.close(5 * UNIT)
    client.text("late")
    assert client.close(UNIT) and client.flush(UNIT)
    assert memory.events == []


def test_current_session_follows_the_with_block(make_client: MakeClient) -> None:
    client = make_client()
    assert client.current_session() is None
    with client.session("outer") as s:
        assert client.current_session() is s
    assert client.current_session() is None


def test_tool_call_context_manager_reports_start_and_end(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with client.session("s") as s, s.tool_call("search", {"q": "cats"}) as call:
        call.progress(0.5, message="half")
        call.result = ["a", "b"]
    assert client.flush(5 * UNIT)
    start, progress, end = (e.event for e in memory.events)
    assert start["event_type"] == "tool:start" and start["call"]["state"] == "executing"
    assert progress["progress"] == 0.5 and progress["message"] == "half"
    assert end["event_type"] == "tool:end"
    assert end["call"]["result"] == ["a", "b"] and end["call"]["state"] == "completed"
    assert end["call"]["duration_ms"] >= 0 and end["call"]["id"] == start["call"]["id"]
    assert end["call"]["arguments"] == {"q": "cats"}


@pytest.mark.parametrize(
    ("finish", "reported"),
    [
        (lambda call: call.end({"hits": 3}), "tool:end"),
        (lambda call: call.fail("quota exceeded"), "tool:error"),
        (lambda call: call.cancel("not needed"), "tool:canceled"),
    ],
    ids=["end", "fail", "cancel"],
)
def test_a_tool_call_finished_in_its_block_is_reported_once(
    memory: InMemoryStudio, make_client: MakeClient, finish: Any, reported: str
) -> None:
    """The block's exit reported it again: `end()` twice, and `fail()` then a `tool:end` that
    called the failed call completed."""
    client = make_client()
    with client.tool_call("search") as call:
        finish(call)
    assert client.flush(5 * UNIT)
    assert [e.event["event_type"] for e in memory.events] == ["tool:start", reported]
    assert call.state == memory.events[-1].event["call"]["state"]


def test_tool_call_reports_error_and_propagates(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(RuntimeError), client.tool_call("fetch"):
        raise RuntimeError("timeout")
    assert client.flush(5 * UNIT)
    start, error = (e.event for e in memory.events)
    assert error["event_type"] == "tool:error" and error["call"]["state"] == "failed"
    assert error["error"] == "RuntimeError: timeout"


def test_tool_decorator_binds_arguments_per_call(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    @client.tool("add")
    def add(a: int, b: int = 2) -> int:
        return a + b

    with client.session("s"):
        assert add(1) == 3
        assert add(5, b=5) == 10
    assert client.flush(5 * UNIT)
    ends = memory.events_of("tool:end", "s")
    assert [e.event["call"]["arguments"] for e in ends] == [{"a": 1}, {"a": 5, "b": 5}]
    assert [e.event["call"]["result"] for e in ends] == [3, 10]
    assert len({e.event["call"]["id"] for e in ends}) == 2


def test_session_tool_call_works_as_decorator(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    s = client.session("s")

    @s.tool_call("lookup")
    def lookup(key: str) -> str:
        return key.upper()

    assert lookup("x") == "X"
    assert client.flush(5 * UNIT)
    assert [e.event_type for e in memory.events] == ["tool:start", "tool:end"]


def test_async_tool_decorator_and_async_flush(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    @client.tool
    async def fetch(url: str) -> int:
        await asyncio.sleep(0)
        return len(url)

    async def main() -> bool:
        async with client.session("s"):
            assert await fetch("abc") == 3
        return await client.aflush(5 * UNIT)

    assert asyncio.run(main())
    end = memory.events_of("tool:end")[0].event
    assert end["call"]["name"] == "fetch" and end["call"]["result"] == 3
    assert memory.sessions["s"].status == "completed"


def test_async_close(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    client.text("x")
    assert asyncio.run(client.aclose(5 * UNIT))
    assert len(memory.events) == 1


def test_disabled_client_starts_no_thread_and_stores_nothing(memory: InMemoryStudio) -> None:
    before = threading.active_count()
    client = StudioClient("a", enabled=False, transport=memory.transport())
    with client.session("s") as s:
        s.text("x")
        s.token_usage(1, 2)
        with s.tool_call("t"):
            pass
    assert threading.active_count() == before
    assert client.flush(0) and client.close(0)
    assert memory.connects == 0 and not client.enabled
    assert client.stats().queued == 0


class Watched(Mapping[str, Any]):
    """Tool arguments that count every look at them: a client that reports nothing must not."""

    def __init__(self) -> None:
        self.looks = 0

    def __getitem__(self, key: str) -> Any:
        self.looks += 1
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        self.looks += 1
        return iter(())

    def __len__(self) -> int:
        self.looks += 1
        return 1


def test_disabled_client_tool_call_never_reads_its_arguments(memory: InMemoryStudio) -> None:
    client = StudioClient("a", enabled=False, transport=memory.transport())
    arguments = Watched()
    with client.tool_call("search", arguments) as call:
        call.progress(0.5, message="half")
        call.intermediate(arguments)
    assert arguments.looks == 0
    assert memory.connects == 0 and memory.events == []


def test_disabled_client_builds_no_tool_call_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ToolCall] = []

    def snapshot(call: ToolCall) -> dict[str, Any]:
        built.append(call)
        return {"id": call.id}

    monkeypatch.setattr(ToolCall, "snapshot", snapshot)
    client = StudioClient("a", enabled=False)
    with client.session("s") as s:
        with s.tool_call("search", {"q": "cats"}, cancelable=True) as call:
            call.progress(0.5)
        with pytest.raises(ValueError), s.tool_call("fetch"):
            raise ValueError("boom")
        assert not s.request_permission(s.tool_call("write"), timeout=UNIT)
    assert built == []
    assert call.state == "completed"


def test_disabled_client_decorated_tool_binds_no_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound: list[object] = []
    monkeypatch.setattr(client_module, "_bound_arguments", lambda *a: bound.append(a) or {})
    client = StudioClient("a", enabled=False)

    @client.tool(cancelable=True)
    def add(a: int, b: int = 2) -> int:
        call = current_tool_call()
        assert call is not None and not call.cancelled  # the agent's code runs unchanged
        return a + b

    assert add(1) == 3
    assert bound == []


def test_disabled_by_default_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASTER_STUDIO_ENABLED", raising=False)
    assert not StudioClient("a").enabled


def test_enabled_from_environment(monkeypatch: pytest.MonkeyPatch, memory: InMemoryStudio) -> None:
    monkeypatch.setenv("ASTER_STUDIO_ENABLED", "true")
    monkeypatch.setenv("ASTER_STUDIO_URL", "ws://127.0.0.1:9")
    client = StudioClient("a", transport=memory.transport(), strict=True)
    try:
        assert client.enabled and client.url == "ws://127.0.0.1:9/v1/remote-agents/connect"
    finally:
        assert client.close(5 * UNIT)


def test_token_sent_as_bearer_header(
    monkeypatch: pytest.MonkeyPatch, memory: InMemoryStudio
) -> None:
    monkeypatch.setenv("ASTER_STUDIO_TOKEN", "s3cret")
    transport = memory.transport()
    client = StudioClient("a", enabled=True, url="ws://x", transport=transport, strict=True)
    try:
        assert client.flush(5 * UNIT)
        assert transport.last_headers == {"Authorization": "Bearer s3cret"}
    finally:
        client.close(5 * UNIT)


def test_invalid_agent_id_raises_in_constructor() -> None:
    with pytest.raises(ValueError):
        StudioClient("", enabled=False)


def test_internal_error_on_agent_thread_is_counted_not_raised(make_client: MakeClient) -> None:
    client = make_client(strict=False)

    def broken(item: object) -> None:
        raise RuntimeError("sdk bug")

    client._put = broken  # simulate an SDK bug on the emitting path
    client.text("x")
    client.token_usage(1, 1)
    assert client.stats().internal_errors == 2


def test_internal_error_raised_in_strict_mode(make_client: MakeClient) -> None:
    client = make_client(strict=True)

    def broken(item: object) -> None:
        raise RuntimeError("sdk bug")

    client._put = broken
    with pytest.raises(RuntimeError, match="sdk bug"):
        client.text("x")
    with pytest.raises(InternalError):
        client.flush(UNIT)
    client._diag.strict = False  # let the fixture close it quietly


class ExplodingTransport:
    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        raise RuntimeError("transport bug")


def test_worker_internal_error_surfaces_from_flush_in_strict_mode() -> None:
    client = StudioClient(
        "a", enabled=True, url="ws://x", transport=ExplodingTransport(), strict=True
    )
    try:
        with pytest.raises(InternalError):
            client.flush(0.2 * UNIT)
    finally:
        client._diag.strict = False
        client.close(0.2 * UNIT)


def test_worker_internal_error_is_counted_when_not_strict() -> None:
    client = StudioClient(
        "a", enabled=True, url="ws://x", transport=ExplodingTransport(), strict=False
    )
    try:
        client.text("x")
        assert client.flush(0.2 * UNIT) is False
        assert client.stats().internal_errors >= 1
    finally:
        client.close(0.2 * UNIT)


def test_generic_event_accepts_any_field_name(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.event("monitor", "custom", event_type_hint="x", channel_name="y", step=1)
    assert client.flush(5 * UNIT)
    assert memory.events[0].event["channel_name"] == "y"


@pytest.mark.parametrize("timeout", [None, float("inf"), 1e12])
def test_close_without_a_deadline_delivers_everything(
    memory: InMemoryStudio, make_client: MakeClient, timeout: float | None
) -> None:
    client = make_client()
    session = client.session("s")
    for _ in range(500):
        session.text("x")
    assert client.close(timeout) is True
    assert len(memory.events_of("text_chunk")) == 500
    assert memory.sessions["s"].status == "interrupted"
    assert "agent-1" in memory.offline


@pytest.mark.parametrize("timeout", [None, float("inf"), 1e12])
def test_aclose_without_a_deadline_delivers_everything(
    memory: InMemoryStudio, make_client: MakeClient, timeout: float | None
) -> None:
    client = make_client()
    client.text("x")
    assert asyncio.run(client.aclose(timeout)) is True
    assert len(memory.events_of("text_chunk")) == 1


@pytest.mark.parametrize("timeout", [None, float("inf"), 1e12])
def test_flush_without_a_deadline_waits_for_delivery(
    memory: InMemoryStudio, make_client: MakeClient, timeout: float | None
) -> None:
    client = make_client()
    for _ in range(500):
        client.text("x")
    assert client.flush(timeout) is True
    assert asyncio.run(client.aflush(timeout)) is True
    assert len(memory.events_of("text_chunk")) == 500
    assert client.stats().internal_errors == 0


def test_flush_without_a_deadline_returns_when_the_client_closes(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client()
    client.text("x")
    results: list[bool] = []
    waiting = threading.Thread(target=lambda: results.append(client.flush(None)))
    waiting.start()
    waiting.join(0.2 * UNIT)
    assert waiting.is_alive()  # no deadline: still waiting for the Studio
    client.close(0)
    waiting.join(5 * UNIT)
    assert results == [False]


def test_close_with_a_nan_timeout_does_not_wait(make_client: MakeClient) -> None:
    client = make_client()
    assert client.close(float("nan")) in (True, False)
    assert client.stats().internal_errors == 0


def test_connection_warnings_do_not_log_url_credentials(
    memory: InMemoryStudio, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    memory.down = True
    client = make_client(url="ws://user:pw@in-memory.invalid/?token=s3cret")
    client.text("x")
    assert wait_until(lambda: client.stats().connect_failures > 0)
    memory.down = False
    assert client.flush(5 * UNIT)
    assert "cannot reach the Studio at ws://***@in-memory.invalid" in caplog.text
    assert "pw" not in caplog.text and "s3cret" not in caplog.text
    assert "pw" not in repr(client)


def test_events_queued_behind_the_close_are_counted_dropped_not_sent(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    # A thread that read the client's enqueue function just before close() switched it (or
    # the exit handler, which closes the worker directly) queues behind the close.
    client = make_client()
    client.session("s").text("before")
    worker = client._worker
    assert worker is not None
    worker.request_close(float("inf"))
    client._enqueue((client_module.OP_TEXT, "s", 0.0, "after", None))
    assert worker.done.wait(5 * UNIT)
    assert [e.event["delta"] for e in memory.events_of("text_chunk")] == ["before"]
    assert client.stats().dropped == 1


LATE_REPORTER = """
import atexit, logging, sys
from aster_studio_sdk.testing import InMemoryStudio

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
memory = InMemoryStudio()
clients = []

def summary():  # registered before the client: runs after the SDK's exit handler
    client = clients[0]
    client.text("late")
    client.event("progress", "done")
    print("dropped", client.stats().dropped, "stored", len(memory.events), flush=True)

atexit.register(summary)
clients.append(memory.client("exiter", strict=True))
with clients[0].session("s") as s:
    s.text("early")
"""


def test_events_reported_after_the_exit_handler_are_counted_and_logged() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LATE_REPORTER],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
    )
    assert done.returncode == 0, done.stderr
    assert "dropped 2 stored 1" in done.stdout
    assert "after close() or the SDK's exit handler" in done.stderr


def test_sessions_stay_within_the_queue_bound_while_the_studio_is_down(
    memory: InMemoryStudio, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "_CONTROL_SLACK", 200)
    memory.down = True
    options = replace(FAST, max_queue_size=100, max_unacked_messages=10)
    client = make_client(options=options)
    for _ in range(5_000):
        with client.session() as s:
            s.text("hi")
    stats = client.stats()
    # Starts (and ends of sessions whose start was dropped) stop at the bound plus the slack.
    assert stats.queued <= 100 + 200 + 1
    assert stats.dropped > 5_000
    memory.down = False
    assert client.flush(10 * UNIT)
    # Every session the Studio heard of was ended: none is left open.
    assert memory.sessions
    assert {s.status for s in memory.sessions.values()} == {"completed"}


def test_generator_tool_ends_when_the_generator_does(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    inside: list[ToolCall | None] = []

    @client.tool
    def pages(n: int) -> Iterator[str]:
        for i in range(n):
            inside.append(current_tool_call())
            yield f"page {i}"
        return "all read"  # type: ignore[misc]

    with client.session("s"):
        gen = pages(2)
        assert memory.events_of("tool:start") == []  # nothing ran yet
        assert list(gen) == ["page 0", "page 1"]
        assert current_tool_call() is None  # the call is current only inside the generator
    assert client.flush(5 * UNIT)
    assert [e.event_type for e in memory.events] == [
        "tool:start",
        "tool:intermediate",
        "tool:intermediate",
        "tool:end",
    ]
    assert [e.event["data"] for e in memory.events_of("tool:intermediate")] == ["page 0", "page 1"]
    end = memory.events_of("tool:end")[0].event["call"]
    assert end["result"] == "all read" and end["arguments"] == {"n": 2}
    assert all(call is not None and call.name == "pages" for call in inside)


def test_generator_tool_closed_early_is_cancelled_and_one_that_raises_fails(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    @client.tool
    def numbers() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("boom")

    gen = numbers()
    assert next(gen) == 1
    gen.close()
    with pytest.raises(ValueError, match="boom"):
        list(numbers())
    assert client.flush(5 * UNIT)
    assert len(memory.events_of("tool:canceled")) == 1
    assert "boom" in memory.events_of("tool:error")[0].event["error"]


def test_generator_tool_passes_send_and_throw_through(make_client: MakeClient) -> None:
    client = make_client()

    @client.tool
    def echo() -> Iterator[str]:
        got = yield "ready"
        try:
            yield f"got {got}"
        except KeyError:
            yield "caught"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    assert gen.throw(KeyError("k")) == "caught"


def test_async_generator_tool_ends_when_the_generator_does(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    @client.tool("stream")
    async def stream(n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        return [i async for i in stream(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    assert client.flush(5 * UNIT)
    assert [e.event_type for e in memory.events] == [
        "tool:start",
        *["tool:intermediate"] * 3,
        "tool:end",
    ]


class RecordingTransport(MemoryTransport):
    """The in-memory transport, remembering the URLs it was asked to connect to."""

    def __init__(self, studio: InMemoryStudio) -> None:
        super().__init__(studio)
        self.urls: list[str] = []

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        self.urls.append(url)
        return super().connect(url, headers, timeout)


SECRET_URL = "ws://writer:hunter22@studio.invalid:3032/base?token=tok3nvalue&x=1"


def test_url_repr_and_settings_show_no_credentials(memory: InMemoryStudio) -> None:
    client = StudioClient(
        "a", enabled=True, url=SECRET_URL, token="bearer-s3cret", transport=memory.transport()
    )
    try:
        assert (
            client.url == "ws://***@studio.invalid:3032/base/v1/remote-agents/connect?token=***&x=1"
        )
        shown = " ".join(
            [
                client.url,
                repr(client),
                repr(client.settings),
                str(client.settings),
                repr(client.stats()),
            ]
        )
        for secret in ("writer", "hunter22", "tok3nvalue", "bearer-s3cret"):
            assert secret not in shown
        assert client.flush(5 * UNIT)
    finally:
        client.close(5 * UNIT)


def test_the_connection_uses_the_url_with_its_credentials(memory: InMemoryStudio) -> None:
    transport = RecordingTransport(memory)
    client = StudioClient("a", enabled=True, url=SECRET_URL, transport=transport, strict=True)
    try:
        client.text("x")
        assert client.flush(5 * UNIT)
        assert transport.urls[0] == (
            "ws://writer:hunter22@studio.invalid:3032/base/v1/remote-agents/connect"
            "?token=tok3nvalue&x=1"
        )
    finally:
        client.close(5 * UNIT)


def test_debug_logs_of_a_client_with_credentials_show_none(
    memory: InMemoryStudio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    memory.down = True
    client = StudioClient("a", enabled=True, url=SECRET_URL, transport=memory.transport())
    try:
        with client.session("s") as s:
            s.text("x")
        assert wait_until(lambda: client.stats().connect_failures > 0)
        memory.down = False
        assert client.flush(5 * UNIT)
    finally:
        client.close(5 * UNIT)
    assert "studio.invalid" in caplog.text  # the lines name the Studio...
    for secret in ("hunter22", "tok3nvalue"):
        assert secret not in caplog.text  # ...without its credentials


def full_while_down(
    memory: InMemoryStudio,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    drop_policy: str = "drop_newest",
) -> tuple[StudioClient, list[Session]]:
    """A client whose resend buffer (10 events), queue (20) and slack for control messages
    (5, taken by five sessions' starts) are full while the Studio is down; and those sessions."""
    monkeypatch.setattr(client_module, "_CONTROL_SLACK", 5)
    options = replace(FAST, max_queue_size=20, max_unacked_messages=10, drop_policy=drop_policy)
    memory.down = True
    client = make_client(options=options)
    for i in range(10):
        client.text(f"buffered {i}")
    assert wait_until(lambda: client.stats().unacked == 10), client.stats()
    for i in range(20):
        client.text(f"queued {i}")
    assert client.stats().queued == 20
    return client, [client.session(f"filler-{i}") for i in range(5)]


def test_end_of_a_session_whose_start_was_dropped_is_kept_once_its_event_got_in(
    memory: InMemoryStudio, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, fillers = full_while_down(memory, make_client, monkeypatch, "drop_oldest")
    dropped = client.stats().dropped
    victim = client.session("victim")  # its start is dropped...
    assert client.stats().dropped == dropped + 1
    victim.text("hello")  # ...its event gets in (drop_oldest drops the oldest event)...
    victim.end()  # ...so its end must, or the Studio shows it active for ever
    memory.down = False
    assert client.flush(10 * UNIT)
    assert [e.event["delta"] for e in memory.events_of("text_chunk", "victim")] == ["hello"]
    assert memory.sessions["victim"].status == "completed"
    for filler in fillers:
        filler.end()


def test_end_of_a_session_whose_start_and_events_were_all_dropped_stays_bounded(
    memory: InMemoryStudio, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = full_while_down(memory, make_client, monkeypatch)
    for i in range(100):
        with client.session(f"gone-{i}") as s:  # drop_newest: nothing of it gets in
            s.text("lost")
    assert client.stats().queued == 20 + 5
    assert client.stats().dropped == 300  # a start, an event and an end each
    memory.down = False
    assert client.flush(10 * UNIT)
    assert not [sid for sid in memory.sessions if sid.startswith("gone-")]


def test_close_ends_a_session_whose_start_was_dropped_once_its_event_got_in(
    memory: InMemoryStudio, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = full_while_down(memory, make_client, monkeypatch, "drop_oldest")
    client.session("victim").text("hello")  # never ended by the agent
    memory.down = False
    assert client.close(10 * UNIT)
    assert memory.sessions["victim"].status == "interrupted"
