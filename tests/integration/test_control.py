"""Steering: requests from agents, decisions from people, delivery, expiry, conflicts, audit."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from tests.support.agent import RawAgent, event
from tests.support.api import call, get, wait_for
from tests.support.server import StudioProcess

CALL = {"id": "call_1", "name": "write_file", "arguments": {"path": "/tmp/x"}, "state": "pending"}


def steerable(studio: StudioProcess, agent_id: str = "steer") -> RawAgent:
    agent = RawAgent(studio.agent_url)
    reply = agent.request(
        {"type": "register", "agent": {"id": agent_id, "capabilities": ["control"]}}
    )
    assert reply["type"] == "registered"
    return agent


def pending(studio: StudioProcess, count: int = 1) -> list[dict[str, Any]]:
    data = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/requests?status=pending"),
        lambda d: d["pending"] == count,
    )
    return list(data["requests"])


def ask_permission(agent: RawAgent, agent_id: str = "steer", **extra: Any) -> None:
    agent.send(event(agent_id, "permission_required", channel="control", call=CALL, **extra))


def test_permission_request_is_listed_as_pending(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
    assert (request["kind"], request["key"], request["stage"]) == (
        "permission",
        "call_1",
        "pending",
    )
    assert request["request"]["name"] == "write_file"
    assert get(studio.http_url, "/v1/dashboard/overview")["pending_requests"] == 1


def test_asking_twice_for_the_same_call_makes_one_request(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        ask_permission(agent)
        agent.request({"type": "ping"})
        time.sleep(0.2)
        assert len(pending(studio)) == 1


def test_allow_reaches_the_agent_and_its_ack_is_recorded(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/decision",
            "POST",
            {"decision": "allow", "note": "just once", "decided_by": "alice"},
        )
        assert status == 200 and body["data"]["stage"] == "delivered"
        control = agent.recv_until("control")
        assert control["event_type"] == "permission_decided"
        assert (
            control["call_id"],
            control["decision"],
            control["decided_by"],
            control["note"],
        ) == (
            "call_1",
            "allow",
            "alice",
            "just once",
        )
        agent.send(event("steer", "permission_decided", call_id="call_1", decision="allow"))
        done = wait_for(
            lambda: get(studio.http_url, f"/v1/dashboard/requests/{request['id']}"),
            lambda r: r["stage"] == "acknowledged",
        )
    assert done["decided_by"] == "alice"
    actions = [e["action"] for e in get(studio.http_url, "/v1/dashboard/audit")["entries"]]
    assert actions[::-1] == ["requested", "decided", "delivered", "acknowledged"]


def test_deny_is_delivered_as_deny(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
        call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/decision",
            "POST",
            {"decision": "deny"},
        )
        assert agent.recv_until("control")["decision"] == "deny"


def test_questions_are_answered(studio: StudioProcess) -> None:
    questions = [
        {
            "question": "Which file?",
            "header": "File",
            "multi_select": False,
            "options": [{"label": "a.txt", "description": ""}],
        }
    ]
    with steerable(studio) as agent:
        agent.send(event("steer", "ask_user", request_id="q-1", questions=questions))
        (request,) = pending(studio)
        assert request["kind"] == "question" and request["request"]["questions"] == questions
        status, _ = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/answer",
            "POST",
            {"answers": {"Which file?": "a.txt"}},
        )
        assert status == 200
        control = agent.recv_until("control")
    assert control == {
        "type": "control",
        "event_type": "user_answer",
        "request_id": "q-1",
        "answers": {"Which file?": "a.txt"},
        "decided_by": "console",
    }


def question(text: str) -> dict[str, Any]:
    return {"question": text, "header": text[:40], "multi_select": False, "options": []}


def answer(studio: StudioProcess, agent: RawAgent, answers: Any, *texts: str) -> Any:
    """Ask `texts` as one request, answer it with `answers`; return (status, body)."""
    questions = [question(t) for t in texts or ("Which file?",)]
    agent.send(event("steer", "ask_user", request_id="q-1", questions=questions))
    (request,) = pending(studio)
    return call(studio.http_url, f"/v1/dashboard/requests/{request['id']}/answer", "POST", answers)


def test_answers_that_answer_no_question_are_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": {}})
        assert status == 400 and "Which file?" in body["error"]["message"]
        assert pending(studio)[0]["status"] == "pending"


def test_an_answer_to_a_question_not_asked_is_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": {"Which file?": "a", "Other?": "b"}})
    assert status == 400 and "Other?" in body["error"]["message"]


def test_a_question_left_unanswered_is_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": {"One?": "a"}}, "One?", "Two?")
    assert status == 400 and "Two?" in body["error"]["message"]


def test_a_list_of_answers_is_keyed_by_the_questions_in_order(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": ["a", ["b", "c"]]}, "One?", "Two?")
        assert status == 200, body
        delivered = agent.recv_until("control")["answers"]
    assert body["data"]["response"]["answers"] == {"One?": "a", "Two?": ["b", "c"]}
    assert delivered == {"One?": "a", "Two?": ["b", "c"]}


def test_a_list_of_answers_of_another_length_is_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, _ = answer(studio, agent, {"answers": ["a", "b"]}, "One?")
    assert status == 400


def test_an_answer_over_the_size_limit_is_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": {"Which file?": "x" * 4_001}})
        assert status == 400 and "at most" in body["error"]["message"]
        assert pending(studio)[0]["status"] == "pending"


def test_answers_over_the_total_size_limit_are_400(studio: StudioProcess) -> None:
    texts = [f"Question {i}?" for i in range(40)]
    answers = {t: "x" * 3_000 for t in texts}  # each under the limit of one answer
    with steerable(studio) as agent:
        status, body = answer(studio, agent, {"answers": answers}, *texts)
    assert status == 400 and "in all" in body["error"]["message"]


def test_decision_made_while_offline_is_delivered_on_reconnect(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
    wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/agents/steer"),
        lambda v: v["status"] == "offline",
    )
    status, body = call(
        studio.http_url,
        f"/v1/dashboard/requests/{request['id']}/decision",
        "POST",
        {"decision": "allow"},
    )
    assert status == 200 and body["data"]["stage"] == "decided"
    with steerable(studio) as again:
        control = again.recv_until("control")
    assert (control["call_id"], control["decision"]) == ("call_1", "allow")


def test_expired_request_is_shown_expired_and_refuses_decisions(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent, timeout_ms=300)
        (request,) = pending(studio)
        assert request["expires_at"] is not None
        expired = wait_for(
            lambda: get(studio.http_url, f"/v1/dashboard/requests/{request['id']}"),
            lambda r: r["status"] == "expired",
            timeout=5,
        )
        assert expired["stage"] == "expired"
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/decision",
            "POST",
            {"decision": "allow"},
        )
    assert status == 410 and body["error"]["code"] == "expired"


def test_two_concurrent_decisions_one_wins_one_conflicts(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
        results: list[tuple[int, Any]] = []
        start = threading.Barrier(2)

        def decide(who: str, decision: str) -> None:
            start.wait()
            results.append(
                call(
                    studio.http_url,
                    f"/v1/dashboard/requests/{request['id']}/decision",
                    "POST",
                    {"decision": decision, "decided_by": who},
                )
            )

        threads = [
            threading.Thread(target=decide, args=a) for a in (("ann", "allow"), ("bob", "deny"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(status for status, _ in results)
        assert codes == [200, 409]
        winner = next(b for s, b in results if s == 200)["data"]
        loser = next(b for s, b in results if s == 409)["error"]
        assert loser["code"] == "conflict" and loser["decided_by"] == winner["decided_by"]
        assert agent.recv_until("control")["decided_by"] == winner["decided_by"]
    refused = wait_for(
        lambda: [
            e
            for e in get(studio.http_url, "/v1/dashboard/audit")["entries"]
            if e["action"] == "conflict"
        ],
        lambda rows: len(rows) == 1,
    )[0]
    assert refused["actor"] != winner["decided_by"]
    assert refused["detail"]["winner"] == winner["decided_by"]
    assert refused["detail"]["attempt"]["decision"] in ("allow", "deny")


def test_tool_control_reaches_the_agent_and_its_response_is_shown(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        status, body = call(
            studio.http_url,
            "/v1/dashboard/agents/steer/tools/call_9/control",
            "POST",
            {"action": "cancel", "note": "too slow"},
        )
        assert status == 200
        control = agent.recv_until("control")
        assert (control["event_type"], control["call_id"], control["action"]) == (
            "tool_control",
            "call_9",
            "cancel",
        )
        agent.send(
            event("steer", "tool_control_response", call_id="call_9", action="cancel", ok=True)
        )
        done = wait_for(
            lambda: get(studio.http_url, f"/v1/dashboard/requests/{body['data']['id']}"),
            lambda r: r["stage"] == "acknowledged",
        )
    assert done["agent_response"]["ok"] is True


def send_tool_control(studio: StudioProcess, action: str, call_id: str = "call_9") -> str:
    status, body = call(
        studio.http_url,
        f"/v1/dashboard/agents/steer/tools/{call_id}/control",
        "POST",
        {"action": action},
    )
    assert status == 200, body
    return str(body["data"]["id"])


def answered(studio: StudioProcess, request_id: str) -> dict[str, Any]:
    """The request once the agent's response is recorded on it."""
    return dict(
        wait_for(
            lambda: get(studio.http_url, f"/v1/dashboard/requests/{request_id}"),
            lambda r: r["agent_response"] is not None,
        )
    )


def test_a_late_response_is_credited_to_the_control_of_its_action(
    studio: StudioProcess,
) -> None:
    """Pause then cancel: the pause's refusal was shown as the cancel's, the cancel's lost."""
    with steerable(studio) as agent:
        pause, cancel = send_tool_control(studio, "pause"), send_tool_control(studio, "cancel")
        for fields in ({"action": "pause", "ok": False, "reason": "busy"}, {"action": "cancel"}):
            agent.send(
                event("steer", "tool_control_response", call_id="call_9", **{"ok": True, **fields})
            )
        paused = answered(studio, pause)["agent_response"]
        cancelled = answered(studio, cancel)["agent_response"]
    assert (paused["action"], paused["ok"], paused["reason"]) == ("pause", False, "busy")
    assert (cancelled["action"], cancelled["ok"]) == ("cancel", True)


def test_a_superseded_control_answered_late_is_shown_acknowledged(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        pause = send_tool_control(studio, "pause")
        send_tool_control(studio, "cancel")
        agent.send(
            event("steer", "tool_control_response", call_id="call_9", action="pause", ok=True)
        )
        paused = answered(studio, pause)
    assert (paused["status"], paused["stage"]) == ("decided", "acknowledged")


def test_a_response_naming_its_control_is_credited_to_that_control(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        first, second = send_tool_control(studio, "pause"), send_tool_control(studio, "pause")
        for request_id, ok in ((second, False), (first, True)):
            agent.send(
                event(
                    "steer",
                    "tool_control_response",
                    request_id=request_id,
                    call_id="call_9",
                    action="pause",
                    ok=ok,
                )
            )
        assert answered(studio, first)["agent_response"]["ok"] is True
        assert answered(studio, second)["agent_response"]["ok"] is False


def test_a_control_superseded_before_its_response_is_closed(studio: StudioProcess) -> None:
    with steerable(studio):
        pause, cancel = send_tool_control(studio, "pause"), send_tool_control(studio, "cancel")
        closed = get(studio.http_url, f"/v1/dashboard/requests/{pause}")
        audit = get(studio.http_url, f"/v1/dashboard/audit?request_id={pause}")["entries"]
    assert (closed["status"], closed["stage"]) == ("expired", "expired")
    (superseded,) = [e for e in audit if e["action"] == "superseded"]
    assert superseded["detail"] == {"by": cancel}


def test_tool_control_for_offline_agent_is_a_conflict(studio: StudioProcess) -> None:
    with steerable(studio):
        pass
    wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/agents/steer"),
        lambda v: v["status"] == "offline",
    )
    status, body = call(
        studio.http_url, "/v1/dashboard/agents/steer/tools/c/control", "POST", {"action": "pause"}
    )
    assert status == 409 and body["error"]["code"] == "conflict"


def test_original_clients_never_receive_control_messages(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as plain:
        plain.request({"type": "register", "agent": {"id": "plain"}})
        ask_permission(plain, "plain")
        (request,) = pending(studio)
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/decision",
            "POST",
            {"decision": "allow"},
        )
        assert status == 200 and body["data"]["stage"] == "decided"
        assert plain.request({"type": "ping"}) == {"type": "pong"}


def test_bad_decisions_are_400(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
        url = f"/v1/dashboard/requests/{request['id']}"
        assert call(studio.http_url, url + "/decision", "POST", {"decision": "maybe"})[0] == 400
        assert call(studio.http_url, url + "/answer", "POST", {"answers": {}})[0] == 400
        assert (
            call(
                studio.http_url,
                "/v1/dashboard/requests/nope/decision",
                "POST",
                {"decision": "allow"},
            )[0]
            == 404
        )


def test_pending_requests_survive_a_restart(studio: StudioProcess) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
    studio.restart()
    (again,) = pending(studio)
    assert again["id"] == request["id"]
    call(
        studio.http_url,
        f"/v1/dashboard/requests/{request['id']}/decision",
        "POST",
        {"decision": "allow"},
    )
    with steerable(studio) as agent:
        assert agent.recv_until("control")["call_id"] == "call_1"


def test_deadline_counts_from_when_the_agent_asked(studio: StudioProcess) -> None:
    asked = time.time() - 0.5  # the agent asked half a second ago; the event arrives now
    with steerable(studio) as agent:
        ask_permission(agent, timeout_ms=1_000, timestamp=asked)
        (request,) = pending(studio)
    span = datetime.fromisoformat(request["expires_at"]) - datetime.fromisoformat(
        request["created_at"]
    )
    assert 0.4 <= span.total_seconds() <= 0.6


def test_a_lone_surrogate_in_decided_by_is_replaced_and_the_request_stays_readable(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (request,) = pending(studio)
        url = f"/v1/dashboard/requests/{request['id']}"
        status, body = call(
            studio.http_url,
            url + "/decision",
            "POST",
            {"decision": "allow", "decided_by": "Zo\ud83d"},
        )
        assert status == 200, body
        assert agent.recv_until("control")["decided_by"] == "Zo\ufffd"
    assert get(studio.http_url, url)["decided_by"] == "Zo\ufffd"
    listed = get(studio.http_url, "/v1/dashboard/requests?status=all")["requests"]
    assert [r["decided_by"] for r in listed] == ["Zo\ufffd"]


def test_a_lone_surrogate_in_answers_is_replaced(studio: StudioProcess) -> None:
    questions = [{"question": "Which file?", "header": "File", "options": []}]
    with steerable(studio) as agent:
        agent.send(event("steer", "ask_user", request_id="q-1", questions=questions))
        (request,) = pending(studio)
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/answer",
            "POST",
            {"answers": {"Which file?": "a\udc00.txt"}},
        )
        assert status == 200, body
        assert agent.recv_until("control")["answers"] == {"Which file?": "a\ufffd.txt"}
    assert get(studio.http_url, f"/v1/dashboard/requests/{request['id']}")["response"] == {
        "answers": {"Which file?": "a\ufffd.txt"}
    }


def requests_for(studio: StudioProcess, agent_id: str = "steer") -> list[dict[str, Any]]:
    path = f"/v1/dashboard/requests?status=all&agent_id={agent_id}"
    return list(get(studio.http_url, path)["requests"])


def test_asking_for_the_same_call_with_other_arguments_makes_a_new_request(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (first,) = pending(studio)
        other = {**CALL, "arguments": {"path": "/etc/passwd"}}
        agent.send(event("steer", "permission_required", channel="control", call=other))
        wait_for(lambda: requests_for(studio), lambda rs: len(rs) == 2)
        # The new one pending, the first closed: one commit later than the new one, maybe.
        (second,) = wait_for(
            lambda: pending(studio), lambda p: len(p) == 1 and p[0]["id"] != first["id"]
        )
    assert second["request"]["arguments"] == {"path": "/etc/passwd"}
    old = get(studio.http_url, f"/v1/dashboard/requests/{first['id']}")
    assert old["status"] == "expired"  # superseded: nobody can approve it for the new ask
    refused = call(
        studio.http_url,
        f"/v1/dashboard/requests/{first['id']}/decision",
        "POST",
        {"decision": "allow"},
    )
    assert refused[0] == 410


def test_asking_again_after_a_decision_makes_a_new_pending_request(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent)
        (first,) = pending(studio)
        url = f"/v1/dashboard/requests/{first['id']}/decision"
        assert call(studio.http_url, url, "POST", {"decision": "allow"})[0] == 200
        agent.recv_until("control")  # delivered; this agent sends no acknowledgement
        ask_permission(agent)
        (second,) = pending(studio)
    assert second["id"] != first["id"]


def test_the_same_ask_sent_again_after_its_decision_makes_no_new_request(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent, ask_id="ask-1")
        (first,) = pending(studio)
        url = f"/v1/dashboard/requests/{first['id']}/decision"
        assert call(studio.http_url, url, "POST", {"decision": "allow"})[0] == 200
        control = agent.recv_until("control")
        ask_permission(agent, ask_id="ask-1")  # a resend of the very same ask
        agent.request({"type": "ping"})
        time.sleep(0.2)
        assert [r["id"] for r in requests_for(studio)] == [first["id"]]
    assert control["ask_id"] == "ask-1"


def test_a_delivered_but_unacknowledged_decision_closes_at_its_deadline(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent, timeout_ms=500)
        (request,) = pending(studio)
        url = f"/v1/dashboard/requests/{request['id']}"
        assert call(studio.http_url, url + "/decision", "POST", {"decision": "allow"})[0] == 200
        agent.recv_until("control")
        done = wait_for(
            lambda: get(studio.http_url, url), lambda r: r["status"] == "expired", timeout=5
        )
    assert (done["decided_by"], done["delivered_at"] is not None) == ("console", True)


def test_an_acknowledgement_for_another_ask_does_not_close_the_request(
    studio: StudioProcess,
) -> None:
    with steerable(studio) as agent:
        ask_permission(agent, ask_id="ask-2")
        (request,) = pending(studio)
        agent.send(
            event("steer", "permission_decided", call_id="call_1", decision="deny", ask_id="ask-1")
        )
        agent.request({"type": "ping"})
        time.sleep(0.2)
        assert get(studio.http_url, f"/v1/dashboard/requests/{request['id']}")["stage"] == "pending"
