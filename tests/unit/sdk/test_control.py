"""Permission requests and questions: decisions, defaults, timeouts, threads (no network)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from aster_studio_sdk import (
    ControlError,
    Decision,
    Permission,
    Question,
    Reason,
    Source,
    StudioClient,
)
from aster_studio_sdk._transport import Connection
from aster_studio_sdk.protocol.answers import AnswerError
from aster_studio_sdk.testing import InMemoryStudio, MemoryTransport
from tests.support.timing import UNIT

from .conftest import FAST, MakeClient, wait_until

SLACK = 0.5 * UNIT  # how much later than its timeout a default may come back


def decide_in_thread(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def control_events(memory: InMemoryStudio, event_type: str) -> list[dict[str, Any]]:
    return [e.event for e in memory.events_of(event_type)]


# ---- a decision arrives ----


def test_allow_from_the_studio_is_returned_and_acknowledged(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    with client.session("s1") as s:
        decision = s.request_permission({"id": "call_1", "name": "write"}, timeout=5 * UNIT)
    assert decision.allowed and bool(decision) is True
    assert (decision.source, decision.reason, decision.decided_by) == (
        Source.STUDIO,
        Reason.DECIDED,
        "policy",
    )
    assert client.flush(5 * UNIT)
    (ack,) = control_events(memory, "permission_decided")
    assert (ack["call_id"], ack["decision"], ack["applied"]) == ("call_1", "allow", True)
    assert memory.requests[0].stage == "acknowledged"


def test_deny_with_a_note_reaches_the_waiting_agent(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    def person() -> None:
        request = memory.wait_for_request("permission", timeout=5 * UNIT)
        memory.deny(request.key, note="not on prod", by="alice")

    decide_in_thread(person)
    decision = client.request_permission({"id": "c", "name": "drop_table"}, timeout=5 * UNIT)
    assert not decision
    assert (decision.decision, decision.note, decision.decided_by) == (
        Permission.DENY,
        "not on prod",
        "alice",
    )


def test_request_reports_the_call_snapshot_and_its_timeout(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    with client.session("s1") as s:
        call = s.tool_call("write_file", {"path": "/tmp/x"}, cancelable=True)
        assert call.request_permission(timeout=2 * UNIT).allowed
    assert client.flush(5 * UNIT)
    (event,) = memory.events_of("permission_required")
    assert event.channel == "control" and event.session_id == "s1"
    assert event.event["timeout_ms"] == int(2 * UNIT * 1000)
    snapshot = event.event["call"]
    assert (snapshot["id"], snapshot["name"], snapshot["arguments"]) == (
        call.id,
        "write_file",
        {"path": "/tmp/x"},
    )
    assert snapshot["state"] == "pending" and snapshot["cancelable"] is True


def test_a_call_without_an_id_gets_one(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.decide_permissions("allow")
    decision = make_client().request_permission({"name": "ls"}, timeout=5 * UNIT)
    assert decision.allowed and decision.call_id.startswith("call_")


def test_policy_function_decides_per_call(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.decide_permissions(lambda call: "allow" if call["name"] == "read" else "deny")
    client = make_client()
    assert client.request_permission({"id": "1", "name": "read"}, timeout=5 * UNIT).allowed
    assert not client.request_permission({"id": "2", "name": "rm"}, timeout=5 * UNIT).allowed


def test_a_garbled_decision_denies(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.decide_permissions("maybe")
    decision = make_client().request_permission({"id": "c"}, timeout=5 * UNIT)
    assert decision.from_studio and decision.decision is Permission.DENY


# ---- defaults: timeout, disconnect, no control, disabled, closed ----


def test_timeout_returns_the_default_deny_on_time(make_client: MakeClient) -> None:
    client = make_client()
    started = time.monotonic()
    decision = client.request_permission({"id": "c"}, timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.2 + SLACK
    assert (decision.decision, decision.source, decision.reason) == (
        Permission.DENY,
        Source.DEFAULT,
        Reason.TIMEOUT,
    )


def test_timeout_uses_the_given_default(make_client: MakeClient) -> None:
    decision = make_client().request_permission({"id": "c"}, timeout=0.05, default="allow")
    assert decision.allowed and decision.source is Source.DEFAULT


def test_timeout_sends_no_acknowledgement(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    client.request_permission({"id": "c"}, timeout=0.05)
    assert client.flush(5 * UNIT)
    assert memory.events_of("permission_decided") == []  # the Studio expires it by itself


def test_invalid_default_is_a_config_error(make_client: MakeClient) -> None:
    with pytest.raises(ValueError, match="allow"):
        make_client().request_permission({"id": "c"}, timeout=1, default="perhaps")


def test_unreachable_studio_gives_the_default_as_disconnected(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client()
    started = time.monotonic()
    decision = client.request_permission({"id": "c"}, timeout=0.2)
    assert time.monotonic() - started < 0.2 + SLACK
    assert (decision.source, decision.reason) == (Source.DEFAULT, Reason.DISCONNECTED)


def test_connection_lost_while_waiting_gives_the_default_on_time(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    assert client.flush(5 * UNIT)

    def cut() -> None:
        memory.wait_for_request("permission", timeout=5 * UNIT)
        memory.down = True
        memory.disconnect_all()

    decide_in_thread(cut)
    started = time.monotonic()
    decision = client.request_permission({"id": "c"}, timeout=0.3)
    assert time.monotonic() - started < 0.3 + SLACK
    assert decision.reason is Reason.DISCONNECTED and not decision


def test_decision_made_while_offline_arrives_after_reconnect(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    def person() -> None:
        request = memory.wait_for_request("permission", timeout=5 * UNIT)
        memory.down = True
        memory.disconnect_all()
        assert wait_until(lambda: not client.stats().connected)
        memory.approve(request.key, by="bob")
        assert request.stage == "decided"  # not delivered: nobody to deliver to
        memory.down = False

    decide_in_thread(person)
    decision = client.request_permission({"id": "c"}, timeout=5 * UNIT)
    assert decision.allowed and decision.decided_by == "bob"
    assert client.flush(5 * UNIT)
    assert memory.requests[0].stage == "acknowledged"


def test_server_without_control_gives_the_default_at_once(make_client: MakeClient) -> None:
    legacy = InMemoryStudio(legacy=True)
    client = make_client(studio=legacy)
    assert wait_until(lambda: client.stats().connected)
    started = time.monotonic()
    decision = client.request_permission({"id": "c"}, timeout=5 * UNIT)
    assert time.monotonic() - started < SLACK
    assert (decision.source, decision.reason) == (Source.DEFAULT, Reason.UNSUPPORTED)


def test_waiting_requests_resolve_when_the_server_turns_out_to_have_no_control() -> None:
    legacy = InMemoryStudio(legacy=True)
    legacy.connect_delay = 0.2
    client = legacy.client(strict=True)
    try:
        started = time.monotonic()
        decision = client.request_permission({"id": "c"}, timeout=5 * UNIT)
        assert time.monotonic() - started < 0.2 + SLACK
        assert decision.reason is Reason.UNSUPPORTED
    finally:
        client.close(2 * UNIT)


def test_disabled_client_gives_the_default_at_once_and_starts_no_thread() -> None:
    before = threading.active_count()
    client = StudioClient("off", enabled=False)
    decided: list[Decision] = []
    decision = client.request_permission({"id": "c"}, timeout=60, default="allow")
    request = client.request_permission({"id": "d"}, timeout=60, on_decision=decided.append)
    answers = client.ask_user("Which?", timeout=60, default={"Which?": "a"})
    assert (decision.allowed, decision.reason) == (True, Reason.DISABLED)
    assert request.done() and decided[0].reason is Reason.DISABLED  # called back in place
    assert answers.answers == {"Which?": "a"} and not answers.answered
    assert threading.active_count() == before


def test_close_releases_a_waiting_request_with_the_default(make_client: MakeClient) -> None:
    client = make_client()
    results: list[Decision] = []
    waiter = decide_in_thread(
        lambda: results.append(client.request_permission({"id": "c"}, timeout=30))
    )
    assert wait_until(lambda: len(client._control._open) == 1)
    started = time.monotonic()
    client.close(1 * UNIT)
    waiter.join(SLACK)
    assert time.monotonic() - started < 1 * UNIT + SLACK
    assert results[0].reason is Reason.CLOSED
    late = client.request_permission({"id": "d"}, timeout=30)
    assert late.reason is Reason.CLOSED


# ---- no deadline: timeout=None ----


def test_request_without_a_timeout_waits_for_the_decision(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """timeout=None failed inside the SDK (logged as an internal error, raised when strict)
    and denied at once."""
    client = make_client()
    decide_in_thread(lambda: memory.approve(memory.wait_for_request(timeout=5 * UNIT).key))
    decision = client.request_permission({"id": "c"}, timeout=None)
    assert decision.allowed and decision.from_studio
    assert client.stats().internal_errors == 0


def test_request_without_a_timeout_gives_the_studio_no_deadline(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    assert client.request_permission({"id": "c"}, timeout=None).allowed
    assert client.flush(5 * UNIT)
    (event,) = memory.events_of("permission_required")
    assert "timeout_ms" not in event.event


def test_close_ends_a_wait_without_a_timeout(make_client: MakeClient) -> None:
    client = make_client()
    results: list[Decision] = []
    waiter = decide_in_thread(
        lambda: results.append(client.request_permission({"id": "c"}, timeout=None))
    )
    assert wait_until(lambda: len(client._control._open) == 1)
    client.close(1 * UNIT)
    waiter.join(1 * UNIT + SLACK)
    assert results[0].reason is Reason.CLOSED


def test_a_timeout_past_what_a_wait_can_take_waits_without_a_deadline(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """An infinite timeout failed inside the SDK; a finite one past threading.TIMEOUT_MAX
    (about 292 years) raised OverflowError into the agent once its request was sent."""
    client = make_client()
    for timeout in (math.inf, 1e12):
        decide_in_thread(lambda: memory.approve(memory.wait_for_request(timeout=5 * UNIT).key))
        decision = client.request_permission({"id": f"c{timeout}"}, timeout=timeout)
        assert decision.allowed and decision.from_studio


def test_callback_form_without_a_timeout_waits_for_the_decision(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    got: list[Decision] = []
    request = client.request_permission({"id": "c"}, timeout=None, on_decision=got.append)
    memory.approve(memory.wait_for_request(timeout=5 * UNIT).key)
    assert wait_until(lambda: bool(got))
    assert got[0].from_studio and request.result() is got[0]


def test_async_form_without_a_timeout_waits_for_the_decision(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    decide_in_thread(lambda: memory.approve(memory.wait_for_request(timeout=5 * UNIT).key))
    decision = asyncio.run(client.arequest_permission({"id": "c"}, timeout=None))
    assert decision.allowed and decision.from_studio


def test_ask_user_without_a_timeout_waits_for_the_answers(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    person = memory.wait_for_request
    decide_in_thread(lambda: memory.answer({"Which?": "a"}, person(timeout=5 * UNIT).key))
    answers = client.ask_user("Which?", timeout=None)
    assert answers.answered and answers.get("Which?") == "a"


# ---- callback and async forms ----


def test_callback_form_returns_at_once_and_calls_back_on_the_control_thread(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    got: list[tuple[Decision, str]] = []
    done = threading.Event()

    def on_decision(decision: Decision) -> None:
        got.append((decision, threading.current_thread().name))
        done.set()

    started = time.monotonic()
    request = client.request_permission({"id": "c"}, timeout=5 * UNIT, on_decision=on_decision)
    assert time.monotonic() - started < 0.05 * UNIT + 0.05
    assert not request.done()
    memory.approve(memory.wait_for_request(timeout=5 * UNIT).key)
    assert done.wait(5 * UNIT)
    decision, thread = got[0]
    assert decision.allowed and thread == "aster-studio-sdk-control"
    assert request.done() and request.result() is decision


def test_callback_form_times_out_with_the_default(make_client: MakeClient) -> None:
    client = make_client()
    got: list[Decision] = []
    started = time.monotonic()
    client.request_permission({"id": "c"}, timeout=0.1, on_decision=got.append)
    assert wait_until(lambda: bool(got), 0.1 + SLACK)
    assert time.monotonic() - started < 0.1 + SLACK
    assert got[0].reason is Reason.TIMEOUT


def test_callback_form_can_be_cancelled(make_client: MakeClient) -> None:
    client = make_client()
    got: list[Decision] = []
    request = client.request_permission({"id": "c"}, timeout=30, on_decision=got.append)
    assert request.cancel().reason is Reason.CANCELLED
    assert wait_until(lambda: bool(got)) and got[0].reason is Reason.CANCELLED


def test_async_form_gets_the_decision_without_blocking_the_loop(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    ticks = 0

    async def main() -> Decision:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        person = asyncio.create_task(asyncio.to_thread(decide))
        decision = await client.arequest_permission({"id": "c"}, timeout=5 * UNIT)
        await person
        tick.cancel()
        return decision

    def decide() -> None:
        request = memory.wait_for_request(timeout=5 * UNIT)
        time.sleep(0.05)  # a person takes a while: ten ticks of a loop that is not blocked
        memory.approve(request.key)

    decision = asyncio.run(main())
    assert decision.allowed and decision.from_studio
    assert ticks > 1  # the loop kept running while the agent waited


def test_async_form_times_out_with_the_default(make_client: MakeClient) -> None:
    client = make_client()
    started = time.monotonic()
    decision = asyncio.run(client.arequest_permission({"id": "c"}, timeout=0.1))
    assert time.monotonic() - started < 0.1 + SLACK
    assert decision.reason is Reason.TIMEOUT


def test_cancelled_async_wait_leaves_no_request_behind(make_client: MakeClient) -> None:
    client = make_client()

    async def main() -> None:
        task = asyncio.create_task(client.arequest_permission({"id": "c"}, timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert client._control._open == {}


# ---- never a hang from the SDK's own threads ----


class CallingTransport:
    """A transport whose connect() runs on the worker thread and tries a blocking request."""

    def __init__(self, studio: InMemoryStudio) -> None:
        self._inner = MemoryTransport(studio)
        self.client: StudioClient | None = None
        self.errors: list[BaseException] = []

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        if self.client is not None and not self.errors:
            try:
                self.client.request_permission({"id": "x"}, timeout=30)
            except ControlError as exc:
                self.errors.append(exc)
        return self._inner.connect(url, headers, timeout)


def test_blocking_request_on_the_worker_thread_is_refused(memory: InMemoryStudio) -> None:
    transport = CallingTransport(memory)
    memory.down = True  # the first attempt fails, so the second one runs with the client known
    client = StudioClient(
        "w", enabled=True, url="ws://in-memory.invalid", transport=transport, strict=True
    )
    try:
        transport.client = client
        memory.down = False
        started = time.monotonic()
        assert wait_until(lambda: bool(transport.errors), 5 * UNIT)
        assert time.monotonic() - started < 5 * UNIT
        assert "SDK's own thread" in str(transport.errors[0])
        assert client._control._open == {}  # refused before anything was reported
    finally:
        client.close(2 * UNIT)


def test_blocking_request_inside_a_callback_is_refused_not_hung(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    errors: list[BaseException] = []
    done = threading.Event()

    def on_decision(decision: Decision) -> None:
        try:
            client.request_permission({"id": "inner"}, timeout=30)
        except ControlError as exc:
            errors.append(exc)
        done.set()

    client.request_permission({"id": "outer"}, timeout=5 * UNIT, on_decision=on_decision)
    assert done.wait(5 * UNIT)
    assert len(errors) == 1


def test_result_of_a_finished_request_is_fine_inside_a_callback(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    first = client.request_permission({"id": "a"}, timeout=5 * UNIT, on_decision=lambda d: None)
    assert wait_until(first.done)
    seen: list[Decision] = []
    client.request_permission(
        {"id": "b"}, timeout=5 * UNIT, on_decision=lambda d: seen.append(first.result())
    )
    assert wait_until(lambda: bool(seen)) and seen[0].allowed


def test_many_threads_each_get_their_own_decision(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.decide_permissions(lambda call: "allow" if int(call["id"]) % 2 else "deny")
    client = make_client()
    results: dict[int, Decision] = {}

    def ask(i: int) -> None:
        results[i] = client.request_permission({"id": str(i)}, timeout=5 * UNIT)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10 * UNIT)
    assert len(results) == 40
    assert all(results[i].allowed == bool(i % 2) and results[i].from_studio for i in results)


def test_same_call_asked_twice_gets_one_decision(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    results: list[Decision] = []
    threads = [
        decide_in_thread(
            lambda: results.append(client.request_permission({"id": "c"}, timeout=5 * UNIT))
        )
        for _ in range(2)
    ]
    assert wait_until(lambda: len(client._control._open.get(("permission", "c"), ())) == 2)
    memory.wait_for_request(key="c", timeout=5 * UNIT)
    memory.approve("c")
    for t in threads:
        t.join(5 * UNIT)
    assert [r.allowed for r in results] == [True, True]
    assert len(memory.requests) == 1  # the Studio keeps one request per call
    assert client.flush(5 * UNIT)
    assert len(memory.events_of("permission_decided")) == 1


# ---- at-least-once delivery ----


def test_a_repeated_decision_is_ignored(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.decide_permissions("allow")
    client = make_client()
    assert client.request_permission({"id": "c"}, timeout=5 * UNIT).allowed
    for conn in memory._connections:
        conn.push({"type": "control", "event_type": "permission_decided", "call_id": "c"})
    assert client.flush(5 * UNIT)
    assert wait_until(lambda: client.stats().control_messages == 2)
    assert client.flush(5 * UNIT)
    assert len(memory.events_of("permission_decided")) == 1


def test_a_decision_after_the_agent_gave_up_is_acknowledged_as_not_applied(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    request = client.request_permission({"id": "c"}, timeout=5 * UNIT, on_decision=lambda d: None)
    memory.wait_for_request(key="c", timeout=5 * UNIT)
    assert request.cancel().reason is Reason.CANCELLED  # went on with the default (deny)
    memory.approve("c", by="slowpoke")  # the person clicks a moment too late
    ack = memory.wait_for_acknowledgement(memory.requests[0], 5 * UNIT)
    assert (ack["decision"], ack["applied"], ack["reason"], ack["decided_by"]) == (
        "deny",
        False,
        "cancelled",
        "slowpoke",
    )
    assert not request.result()  # the result the agent already has does not change


def test_a_decision_for_an_ask_this_process_did_not_make_is_not_applied_later(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    # An earlier run of the agent asked; its decision comes when this run registers.
    client = make_client()
    assert client.flush(5 * UNIT)
    for conn in memory._connections:
        conn.push(
            {
                "type": "control",
                "event_type": "permission_decided",
                "call_id": "c",
                "ask_id": "ask_of_an_earlier_run",
                "decision": "allow",
                "decided_by": "carol",
            }
        )
    assert wait_until(lambda: client.stats().control_messages == 1)
    decision = client.request_permission({"id": "c"}, timeout=0.1)
    assert not decision and decision.source is Source.DEFAULT


def test_a_decision_for_another_ask_with_the_same_call_id_is_not_applied(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    request = client.request_permission({"id": "c"}, timeout=0.3, on_decision=lambda d: None)
    memory.wait_for_request(key="c", timeout=5 * UNIT)
    for conn in memory._connections:
        conn.push(
            {
                "type": "control",
                "event_type": "permission_decided",
                "call_id": "c",
                "ask_id": "ask_of_an_earlier_run",
                "decision": "allow",
            }
        )
    assert wait_until(lambda: client.stats().control_messages == 1)
    assert request.result().source is Source.DEFAULT


def test_registration_asks_for_control_messages(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client(capabilities=["writing"])
    assert client.flush(5 * UNIT)
    assert memory.agents["agent-1"].capabilities == ("writing", "control")


# ---- questions ----


def test_ask_user_returns_the_answers_and_acknowledges(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.answer_questions({"Which file?": "a.txt", "Why?": "tidy"})
    client = make_client()
    with client.session("s1") as s:
        answers = s.ask_user(
            [Question("Which file?", options=["a.txt", "b.txt"], header="File"), "Why?"],
            timeout=5 * UNIT,
        )
    assert answers.answered and answers.get("Which file?") == "a.txt"
    assert client.flush(5 * UNIT)
    (asked,) = memory.events_of("ask_user")
    assert asked.event["request_id"] == answers.request_id
    assert asked.event["questions"][0] == {
        "question": "Which file?",
        "header": "File",
        "multi_select": False,
        "options": [{"label": "a.txt", "description": ""}, {"label": "b.txt", "description": ""}],
    }
    (ack,) = control_events(memory, "user_answer")
    assert ack["request_id"] == answers.request_id and ack["answers"]["Why?"] == "tidy"
    assert memory.requests[0].stage == "acknowledged"


def test_a_list_of_answers_is_keyed_by_the_questions_asked(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """A Studio that sends answers as a list: they were keyed "0", "1", so lookups failed."""
    client = make_client()
    request = client.ask_user(
        ["Which file?", "Why?"], timeout=5 * UNIT, request_id="q-1", on_answer=lambda a: None
    )
    assert client.flush(5 * UNIT)
    message = {"type": "control", "event_type": "user_answer", "request_id": "q-1"}
    for conn in memory._connections:
        conn.push({**message, "answers": ["a.txt", "tidy"]})
    answers = request.result()
    assert answers.answered and answers.answers == {"Which file?": "a.txt", "Why?": "tidy"}


def test_ask_user_timeout_returns_the_default_answers(make_client: MakeClient) -> None:
    answers = make_client().ask_user(
        "Proceed?", timeout=0.05, default={"Proceed?": "no"}, request_id="q-7"
    )
    assert (answers.request_id, answers.answers, answers.reason) == (
        "q-7",
        {"Proceed?": "no"},
        Reason.TIMEOUT,
    )


def test_ask_user_async_and_callback_forms(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.answer_questions(lambda questions: {q["question"]: "yes" for q in questions})
    client = make_client()
    answers = asyncio.run(client.aask_user("Go?", timeout=5 * UNIT))
    assert answers.answers == {"Go?": "yes"}
    got: list[Any] = []
    client.ask_user({"question": "Again?", "options": []}, timeout=5 * UNIT, on_answer=got.append)
    assert wait_until(lambda: bool(got)) and got[0].answers == {"Again?": "yes"}


def test_odd_control_messages_are_ignored_without_errors(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    assert client.flush(5 * UNIT)
    odd: list[dict[str, Any]] = [
        {"event_type": "permission_decided"},
        {"event_type": "permission_decided", "call_id": 5, "decision": None},
        {"event_type": "user_answer", "request_id": "q", "answers": "not a mapping"},
        {"event_type": "tool_control", "call_id": "x", "action": "explode"},
        {"event_type": "tool_control", "call_id": None, "action": "cancel"},
        {"event_type": "tool_control", "request_id": ["r"], "call_id": "x", "action": "pause"},
        {"event_type": "something_new", "payload": {"a": 1}},
        {"payload": "not an object"},
    ]
    for conn in memory._connections:
        for message in odd:
            conn.push({"type": "control", **message})
    assert wait_until(lambda: client.stats().control_messages == len(odd))
    answers = client.ask_user("q?", request_id="q", timeout=0.1)  # nothing kept for it
    assert not answers.answered
    assert client.flush(5 * UNIT)
    assert client.stats().internal_errors == 0


def test_the_in_memory_studio_checks_answers_as_the_studio_does(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """It sent any answers: a test could pass answers the Studio refuses (a question left out,
    one never asked) and the agent got them as answered."""
    client = make_client()
    request = client.ask_user(
        ["Which file?", "Why?"], timeout=5 * UNIT, request_id="q-1", on_answer=lambda a: None
    )
    asked = memory.wait_for_request("question", timeout=5 * UNIT)
    for wrong in ({"Which file?": "a.txt"}, {"Which file?": "a", "Why?": "b", "How?": "c"}, ["a"]):
        with pytest.raises(AnswerError):
            memory.answer(wrong, asked.key)
    with pytest.raises(AnswerError):
        memory.answer({"Which file?": "x" * 5_000, "Why?": "b"}, asked.key)
    assert asked.status == "pending"
    memory.answer(["a.txt", "tidy"], asked.key)
    answers = request.result()
    assert answers.answered and answers.answers == {"Which file?": "a.txt", "Why?": "tidy"}


def test_fixed_answers_answer_each_ask_its_own_questions(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.answer_questions({"Which file?": "a.txt", "Why?": "tidy"})
    client = make_client()
    assert client.ask_user("Why?", timeout=5 * UNIT).answers == {"Why?": "tidy"}
    unanswerable = client.ask_user("How?", timeout=0.3, default={"How?": "carefully"})
    assert not unanswerable.answered and unanswerable.answers == {"How?": "carefully"}


SMALL_FRAMES = replace(FAST, max_message_bytes=10_000, max_batch_bytes=20_000)


def test_permission_request_too_large_to_send_resolves_at_once(make_client: MakeClient) -> None:
    client = make_client(options=SMALL_FRAMES)
    call = {"name": "write_file", "arguments": {"content": "x" * 50_000}}
    start = time.monotonic()
    decision = client.session("s").request_permission(call, timeout=30 * UNIT)
    assert time.monotonic() - start < 5 * UNIT
    assert decision.reason is Reason.UNDELIVERABLE
    assert decision.source is Source.DEFAULT and not decision.allowed
    assert client.stats().oversized == 1


def test_permission_request_not_encodable_resolves_at_once(make_client: MakeClient) -> None:
    client = make_client(options=SMALL_FRAMES)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    request = client.request_permission(
        {"name": "loop", "arguments": cyclic}, timeout=30 * UNIT, on_decision=lambda _: None
    )
    assert wait_until(request.done)
    assert request.result().reason is Reason.UNDELIVERABLE
    assert client.stats().unencodable == 1


def test_question_too_large_to_send_resolves_at_once(make_client: MakeClient) -> None:
    client = make_client(options=SMALL_FRAMES)
    start = time.monotonic()
    answers = client.ask_user("y" * 50_000, timeout=30 * UNIT)
    assert time.monotonic() - start < 5 * UNIT
    assert answers.reason is Reason.UNDELIVERABLE and not answers.answered


def test_tool_result_too_large_still_ends_the_call(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client(options=SMALL_FRAMES)
    with client.session("s") as s, s.tool_call("fetch_page", {"url": "u"}) as call:
        call.result = "<html>" + "z" * 50_000
    assert client.flush(5 * UNIT)
    (end,) = control_events(memory, "tool:end")
    assert end["call"]["state"] == "completed"
    assert "omitted" in end["call"]["result"]
    assert end["call"]["arguments"] == {"url": "u"}  # what fits is kept
    assert client.stats().oversized == 0


def test_tool_with_a_large_argument_is_still_reported(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client(options=SMALL_FRAMES)
    with client.session("s") as s, s.tool_call("write_file", {"content": "c" * 50_000}) as call:
        call.progress(0.5)
        call.intermediate("d" * 50_000)
        call.result = "ok"
    assert client.flush(5 * UNIT)
    kinds = ("tool:start", "tool:progress", "tool:intermediate", "tool:end")
    assert [len(control_events(memory, k)) for k in kinds] == [1, 1, 1, 1]
    assert "omitted" in control_events(memory, "tool:intermediate")[0]["data"]
    (end,) = control_events(memory, "tool:end")
    assert end["call"]["result"] == "ok" and "omitted" in end["call"]["arguments"]["omitted"]
