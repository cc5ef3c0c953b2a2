"""Access rules over WebSocket and REST, safe defaults, headers and per-connection limits."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import apsw
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, wait_for
from tests.support.server import StudioProcess, run_cli
from tests.support.timing import UNIT


def cli(db: Path, *args: str) -> str:
    result = run_cli(*args, "--db", str(db))
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_key(db: Path, agents: str = "*") -> str:
    out = cli(db, "keys", "create", "--name", "test", "--agents", agents)
    return next(line for line in out.splitlines() if line.startswith("ask_"))


def request(
    base: str,
    path: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def console_token(server: StudioProcess) -> str:
    """The console token a Studio generated (auth on by agent keys) and logged once."""
    match = wait_for(
        lambda: re.search(r"Console token .*: (\S+)", "".join(server.output)),
        lambda m: m is not None,
    )
    assert match is not None
    return match.group(1)


def console_bearer(server: StudioProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {console_token(server)}"}


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[StudioProcess, str, str]]:
    """A Studio with one agent key for `writer-*`: auth is on; its console token is logged."""
    db = tmp_path / "locked.db"
    key = create_key(db, "writer-*")
    server = StudioProcess(db).start()
    try:
        yield server, key, console_token(server)
    finally:
        server.stop()


def metrics_text(server: StudioProcess) -> str:
    with urllib.request.urlopen(f"{server.http_url}/metrics") as response:
        return str(response.read().decode())


def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with connect(url, additional_headers=headers, open_timeout=5 * UNIT):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_agent_without_key_is_refused_at_handshake(locked: tuple[StudioProcess, str, str]) -> None:
    server, _, _ = locked
    assert ws_status(server.agent_url) == 401
    assert ws_status(server.agent_url, {"Authorization": "Bearer ask_nope_nope"}) == 401


def test_agent_key_in_header_or_query_is_accepted(locked: tuple[StudioProcess, str, str]) -> None:
    server, key, _ = locked
    assert ws_status(server.agent_url, {"Authorization": f"Bearer {key}"}) == 101
    assert ws_status(f"{server.agent_url}?token={key}") == 101


def test_key_may_only_write_for_its_agents(locked: tuple[StudioProcess, str, str]) -> None:
    server, key, token = locked
    with RawAgent(f"{server.agent_url}?token={key}") as agent:
        assert agent.request(register("writer-1"))["type"] == "registered"
        refused = agent.request(register("reader-1"))
        assert (refused["type"], refused["code"]) == ("error", "forbidden_agent")
        agent.send(event("reader-1", "text_chunk", delta="sneaky"))
        assert agent.recv()["code"] == "forbidden_agent"
        agent.send(event("writer-1", "text_chunk", delta="fine"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    bearer = {"Authorization": f"Bearer {token}"}
    stored = wait_for(
        lambda: request(server.http_url, "/v1/dashboard/events", headers=bearer)[2]["data"],
        lambda d: len(d["events"]) == 1,
    )
    assert stored["events"][0]["agent_id"] == "writer-1"


def test_key_may_not_write_into_end_or_take_another_agents_session(tmp_path: Path) -> None:
    """A key for `writer-*` took `reader-1`'s open session over (`register_session`), ended
    it (`end_session` by its id alone, or naming its own agent) and wrote events into it."""
    db = tmp_path / "scoped.db"
    writer_key, reader_key = create_key(db, "writer-*"), create_key(db, "reader-*")
    with StudioProcess(db) as server:
        bearer = console_bearer(server)
        victim = RawAgent(f"{server.agent_url}?token={reader_key}")
        attacker = RawAgent(f"{server.agent_url}?token={writer_key}")
        try:
            victim.request(register("reader-1"))
            opened = {"id": "s-victim", "agent_id": "reader-1"}
            assert victim.request({"type": "register_session", "session": opened})["type"] == (
                "session_registered"
            )
            attacker.request(register("writer-1"))
            taken = {"id": "s-victim", "agent_id": "writer-1", "metadata": {"hijacked": True}}
            for message in (
                {"type": "register_session", "session": taken},
                {**event("writer-1", "text_chunk", delta="injected"), "session_id": "s-victim"},
                {"type": "end_session", "session_id": "s-victim", "status": "failed"},
                {"type": "end_session", "session_id": "s-victim", "agent_id": "writer-1"},
            ):
                reply = attacker.request(message)
                assert (reply["type"], reply["code"]) == ("error", "forbidden_agent"), message
            assert attacker.request({"type": "ping"}) == {"type": "pong"}
            victim.send(event("reader-1", "text_chunk", delta="mine"))
            assert victim.request({"type": "ping"}) == {"type": "pong"}
        finally:
            attacker.close()
            victim.close()
        path = "/v1/dashboard/sessions/s-victim"
        session = wait_for(
            lambda: request(server.http_url, path, headers=bearer)[2]["data"],
            lambda d: d["agent_id"] == "reader-1" and "hijacked" not in (d.get("metadata") or {}),
        )
        assert session["status"] != "failed"
        stored = request(
            server.http_url, "/v1/dashboard/events?session_id=s-victim", headers=bearer
        )
        assert [e["agent_id"] for e in stored[2]["data"]["events"]] == ["reader-1"]


def test_key_may_not_change_a_stored_session_of_another_agent(tmp_path: Path) -> None:
    """Not open now (its agent offline, or the Studio restarted): the store keeps its owner."""
    db = tmp_path / "stored.db"
    writer_key, reader_key = create_key(db, "writer-*"), create_key(db, "reader-*")
    with StudioProcess(db) as server:
        with RawAgent(f"{server.agent_url}?token={reader_key}") as victim:
            victim.request(register("reader-1"))
            opened = {"id": "s-old", "agent_id": "reader-1"}
            victim.request({"type": "register_session", "session": opened})
            victim.send({"type": "end_session", "session_id": "s-old", "agent_id": "reader-1"})
            assert victim.request({"type": "ping"}) == {"type": "pong"}
        with RawAgent(f"{server.agent_url}?token={writer_key}") as attacker:
            attacker.request(register("writer-1"))
            taken = {"id": "s-old", "agent_id": "writer-1", "status": "active"}
            attacker.request({"type": "register_session", "session": taken})
            attacker.send({"type": "end_session", "session_id": "s-old", "status": "failed"})
            assert attacker.request({"type": "ping"}) == {"type": "pong"}
        bearer = console_bearer(server)
        data = request(server.http_url, "/v1/dashboard/sessions/s-old", headers=bearer)[2]["data"]
        assert (data["agent_id"], data["status"]) == ("reader-1", "completed")


def test_a_refused_key_is_not_written_to_the_log(tmp_path: Path) -> None:
    """uvicorn logged the refused handshake's path with `?token=<key>` in clear."""
    db = tmp_path / "log.db"
    key = create_key(db, "writer-*")
    revoked = create_key(db, "writer-*")
    cli(db, "keys", "revoke", revoked.split("_")[1])
    with StudioProcess(db, args=("--log-level", "info")) as server:
        for token in (revoked, key[:-4] + "abcd"):  # revoked, mistyped
            assert ws_status(f"{server.agent_url}?token={token}") == 401
        output = wait_for(lambda: "".join(server.output), lambda out: out.count("[redacted]") >= 2)
    secret, revoked_secret = key.split("_", 2)[2], revoked.split("_", 2)[2]  # ask_<id>_<secret>
    assert secret[:-4] not in output and revoked_secret not in output


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    locked: tuple[StudioProcess, str, str],
) -> None:
    """The public login route read (and parsed) a body of any size: 300 MB took 1 GB."""
    server, _, token = locked
    declared = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10 * UNIT)
    try:
        declared.putrequest("POST", "/v1/auth/login")
        declared.putheader("Content-Type", "application/json")
        declared.putheader("Content-Length", str(2 << 20))
        declared.endheaders()  # the answer comes before the body is sent
        response = declared.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
    finally:
        declared.close()
    # Without a length (chunked), the body ends at the limit: the route sees the client gone.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10 * UNIT)
    conn.putrequest("POST", "/v1/auth/login")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    # A valid login, padded with whitespace past the limit: the old code logged it in.
    chunk = b'{"token": "%s"' % token.encode()
    status = 0  # closed without an answer: refused too
    try:
        for _ in range(40):  # 2.6 MB
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            chunk = b" " * 65536
        conn.send(b"1\r\n}\r\n0\r\n\r\n")
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        pass
    finally:
        conn.close()
    assert status != 200
    small = request(server.http_url, "/v1/auth/login", "POST", {"token": token})
    assert small[0] == 200


def test_a_key_cannot_claim_another_keys_producer(tmp_path: Path) -> None:
    """Naming another key's producer id took its connection over (4001) and moved its mark to
    the attacker's seq: the owner's next messages were acknowledged and never stored."""
    db = tmp_path / "producer.db"
    writer_key, reader_key = create_key(db, "writer-*"), create_key(db, "reader-*")
    with StudioProcess(db) as server:
        owner = RawAgent(f"{server.agent_url}?token={reader_key}")
        attacker = RawAgent(f"{server.agent_url}?token={writer_key}")
        try:
            hello = {"type": "register", "agent": {"id": "reader-1"}, "producer_id": "host-1"}
            assert owner.request(hello)["last_seq"] == 0
            owner.send({**event("reader-1", "step", n=1), "seq": 1})
            assert owner.recv_until("ack")["seq"] == 1
            claim = {"type": "register", "agent": {"id": "writer-1"}, "producer_id": "host-1"}
            assert attacker.request(claim)["last_seq"] == 0  # its own producer of that name
            attacker.send({**event("writer-1", "step", n=0), "seq": 1_000_000})
            assert attacker.recv_until("ack")["seq"] == 1_000_000
            for n in (2, 3):
                owner.send({**event("reader-1", "step", n=n), "seq": n})
            wait_for(lambda: owner.recv_until("ack")["seq"], lambda seq: seq == 3)
        finally:
            attacker.close()
            owner.close()
        bearer = console_bearer(server)
        path = "/v1/dashboard/events?agent_id=reader-1"
        stored = wait_for(
            lambda: request(server.http_url, path, headers=bearer)[2]["data"]["events"],
            lambda e: len(e) == 3,
        )
        assert sorted(e["event"]["n"] for e in stored) == [1, 2, 3]


def test_revoked_key_stops_working(locked: tuple[StudioProcess, str, str]) -> None:
    server, key, _ = locked
    key_id = key.split("_")[1]
    cli(server.db_path, "keys", "revoke", key_id)
    wait_for(lambda: ws_status(f"{server.agent_url}?token={key}"), lambda s: s == 401, timeout=5)


def test_rest_needs_a_console_credential(locked: tuple[StudioProcess, str, str]) -> None:
    server, key, token = locked
    assert request(server.http_url, "/v1/dashboard/agents")[0] == 401
    assert request(server.http_url, "/metrics")[0] == 401
    agent_key = {"Authorization": f"Bearer {key}"}
    assert request(server.http_url, "/v1/dashboard/agents", headers=agent_key)[0] == 401
    ok = request(
        server.http_url, "/v1/dashboard/agents", headers={"Authorization": f"Bearer {token}"}
    )
    assert ok[0] == 200
    assert request(server.http_url, "/healthz")[0] == 200  # health stays public


def login(server: StudioProcess, token: str) -> tuple[str, str]:
    status, headers, body = request(server.http_url, "/v1/auth/login", "POST", {"token": token})
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";")[0], body["data"]["csrf_token"]


def test_wrong_console_token_cannot_log_in(locked: tuple[StudioProcess, str, str]) -> None:
    server, _, _ = locked
    status, _, body = request(server.http_url, "/v1/auth/login", "POST", {"token": "guess"})
    assert status == 401 and body["error"]["code"] == "invalid_token"


def test_cookie_session_reads_and_needs_csrf_to_write(
    locked: tuple[StudioProcess, str, str],
) -> None:
    server, _, token = locked
    cookie, csrf = login(server, token)
    assert request(server.http_url, "/v1/dashboard/agents", headers={"Cookie": cookie})[0] == 200
    price = {"model": "m", "input_price_per_m": 1, "output_price_per_m": 1}
    status, _, body = request(
        server.http_url, "/v1/dashboard/pricing", "PUT", price, {"Cookie": cookie}
    )
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
    assert request(server.http_url, "/v1/dashboard/pricing", "PUT", price, headers)[0] == 200
    foreign = {**headers, "Origin": "http://evil.example"}
    assert request(server.http_url, "/v1/dashboard/pricing", "PUT", price, foreign)[0] == 403


def test_console_stream_checks_credentials_and_origin(
    locked: tuple[StudioProcess, str, str],
) -> None:
    server, _, token = locked
    stream = f"{server.url}/v1/dashboard/events/stream"
    assert ws_status(stream) == 401
    cookie, _ = login(server, token)
    own = f"http://127.0.0.1:{server.port}"
    assert ws_status(stream, {"Cookie": cookie, "Origin": own}) == 101
    assert ws_status(stream, {"Cookie": cookie, "Origin": "http://evil.example"}) == 403


def test_open_studio_refuses_the_console_stream_to_other_sites(studio: StudioProcess) -> None:
    """Open means readable by whoever reaches the port, not by any page the operator visits:
    a browser sends its page's Origin, and the stream (unlike fetches) has no CORS to stop
    the read. Agents are not held to it: one may run in a page of its own."""
    stream = f"{studio.url}/v1/dashboard/events/stream"
    own = f"http://127.0.0.1:{studio.port}"
    assert ws_status(stream) == 101
    assert ws_status(stream, {"Origin": own}) == 101
    assert ws_status(stream, {"Origin": "https://evil.example"}) == 403
    assert ws_status(studio.agent_url, {"Origin": "https://evil.example"}) == 101
    assert "aster_auth_refusals_total 1\n" in metrics_text(studio)


def test_open_studio_on_loopback_answers_to_loopback_names_only(studio: StudioProcess) -> None:
    """DNS rebinding: a page whose own name resolves to 127.0.0.1 is same-origin to itself,
    and could read everything and decide requests through an open Studio."""
    import http.client

    def status(host: str, path: str = "/v1/dashboard/overview") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", studio.port, timeout=5 * UNIT)
        try:
            conn.putrequest("GET", path, skip_host=True)
            conn.putheader("Host", host)
            conn.endheaders()
            return conn.getresponse().status
        finally:
            conn.close()

    port = studio.port
    assert status(f"attacker.example:{port}") == 403
    assert status(f"127.0.0.1.nip.io:{port}") == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"studio.localhost:{port}", "[::1]"):
        assert status(host) == 200, host
    assert status(f"attacker.example:{port}", "/studio/") == 403


def test_session_endpoint_reports_auth_state(locked: tuple[StudioProcess, str, str]) -> None:
    server, _, token = locked
    anonymous = request(server.http_url, "/v1/auth/session")[2]["data"]
    assert anonymous == {"auth_enabled": True, "authenticated": False, "csrf_token": None}
    cookie, csrf = login(server, token)
    mine = request(server.http_url, "/v1/auth/session", headers={"Cookie": cookie})[2]["data"]
    assert mine["authenticated"] is True and mine["csrf_token"] == csrf


def test_a_login_outlives_a_restart_until_its_logout(tmp_path: Path) -> None:
    """Sessions lived in the memory of the Studio: a restart logged every browser out."""
    env = {"ASTER_STUDIO_CONSOLE_TOKEN": "s3cret-token"}
    with StudioProcess(tmp_path / "r.db", env=env) as server:
        cookie, csrf = login(server, "s3cret-token")
        server.restart()
        agents = (server.http_url, "/v1/dashboard/agents")
        assert request(*agents, headers={"Cookie": cookie})[0] == 200
        state = request(server.http_url, "/v1/auth/session", headers={"Cookie": cookie})[2]
        assert state["data"]["csrf_token"] == csrf
        logout = request(
            server.http_url, "/v1/auth/logout", "POST", {}, {"Cookie": cookie, "X-CSRF-Token": csrf}
        )
        assert logout[0] == 200
        assert request(*agents, headers={"Cookie": cookie})[0] == 401
        server.restart()
        assert request(*agents, headers={"Cookie": cookie})[0] == 401


def test_configured_console_token_turns_auth_on(tmp_path: Path) -> None:
    with StudioProcess(tmp_path / "t.db", env={"ASTER_STUDIO_CONSOLE_TOKEN": "s3cret-token"}) as s:
        assert request(s.http_url, "/v1/dashboard/agents")[0] == 401
        assert ws_status(s.agent_url) == 401
        assert ws_status(s.agent_url, {"Authorization": "Bearer s3cret-token"}) == 101
        login(s, "s3cret-token")


def test_open_on_loopback_without_credentials(studio: StudioProcess) -> None:
    assert call(studio.http_url, "/v1/dashboard/agents")[0] == 200
    assert ws_status(studio.agent_url) == 101
    state = call(studio.http_url, "/v1/auth/session")[1]["data"]
    assert state["auth_enabled"] is False and state["authenticated"] is True


def test_public_bind_without_auth_refuses_to_start(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "p.db"))
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr


def test_a_second_studio_on_the_same_database_is_refused(studio: StudioProcess) -> None:
    """One writer per database: a second server names the first and exits; the command line
    still manages keys beside the running one."""
    assert studio.proc is not None
    result = run_cli("serve", "--port", "0", "--db", str(studio.db_path))
    assert result.returncode == 2
    assert f"in use by another Aster Studio (pid {studio.proc.pid})" in result.stderr
    assert "created agent key" in cli(studio.db_path, "keys", "create", "--name", "x").lower()
    assert call(studio.http_url, "/healthz")[0] == 200


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_second_studio_through_another_path_to_the_database_is_refused(
    studio: StudioProcess, tmp_path: Path, link: str
) -> None:
    """Two Studios wrote one file, through a symlink to it, and damaged it."""
    other = tmp_path / "other" / "studio.db"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(studio.db_path)
    else:
        other.hardlink_to(studio.db_path)
    result = run_cli("serve", "--port", "0", "--db", str(other))
    assert result.returncode == 2
    assert "in use by another Aster Studio" in result.stderr
    assert "listening" not in result.stdout and "Traceback" not in result.stderr
    assert call(studio.http_url, "/healthz")[0] == 200


def test_the_command_line_through_a_hard_link_to_a_running_studios_database_is_refused(
    studio: StudioProcess, tmp_path: Path
) -> None:
    """SQLite names the write-ahead log after the path: a key written through a hard link
    would go to a log of its own beside the Studio's, which does not read it."""
    link = tmp_path / "link.db"
    link.hardlink_to(studio.db_path)
    result = run_cli("keys", "create", "--name", "x", "--db", str(link))
    assert result.returncode == 2
    assert "through another path to the file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "link.db-wal").exists()


def test_a_database_from_a_newer_release_stops_the_start_before_it_listens(
    tmp_path: Path,
) -> None:
    db = tmp_path / "newer.db"
    with closing(apsw.Connection(str(db))) as conn:
        conn.execute("PRAGMA user_version=99")
    result = run_cli("serve", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    assert "has schema version 99, newer than this release" in result.stderr
    assert "listening" not in result.stdout and "Traceback" not in result.stderr


def test_a_database_path_under_a_file_stops_the_start_before_it_listens(tmp_path: Path) -> None:
    """The folder could not be made: the start failed inside uvicorn, with a traceback and
    status 3."""
    (tmp_path / "notes").write_text("a file, not a folder")
    db = tmp_path / "notes" / "studio.db"
    result = run_cli("serve", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    assert f"cannot open database {db}" in result.stderr
    assert "listening" not in result.stdout and "Traceback" not in result.stderr


def test_security_headers(studio: StudioProcess) -> None:
    _, headers, _ = request(studio.http_url, "/v1/dashboard/agents")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_rate_limit_slows_a_flood_without_losing_it(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_RATE_LIMIT": "500", "ASTER_STUDIO_RATE_BURST": "100"}
    with StudioProcess(tmp_path / "r.db", env=env) as server, RawAgent(server.agent_url) as agent:
        started = time.monotonic()
        for i in range(6):
            agent.send(
                {
                    "type": "batch",
                    "messages": [event("flood", "x", i=i * 100 + j) for j in range(100)],
                }
            )
        notice = agent.recv_until("error")
        assert notice["code"] == "rate_limited"
        assert agent.request({"type": "ping"}, timeout=10)["type"] in ("pong", "error")
        elapsed = time.monotonic() - started
        assert elapsed >= 0.8  # 500 messages over the burst at 500/s
        count = wait_for(
            lambda: call(server.http_url, "/v1/dashboard/events/count")[1]["data"]["count"],
            lambda n: n == 600,
        )
        assert count == 600


def test_too_many_agents_on_one_connection(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_MAX_AGENTS_PER_CONNECTION": "2"}
    with StudioProcess(tmp_path / "m.db", env=env) as server, RawAgent(server.agent_url) as agent:
        assert agent.request(register("a1"))["type"] == "registered"
        assert agent.request(register("a2"))["type"] == "registered"
        reply = agent.request(register("a3"))
        assert reply["code"] == "too_many_agents"
        assert "index" not in reply
        # In a batch, the refusal says which item, as a decoding error does.
        agent.send({"type": "batch", "messages": [event("a1", "x"), event("a4", "x")]})
        refused = agent.recv()
        assert (refused["code"], refused["index"]) == ("too_many_agents", 1)
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        assert "aster_agent_refusals_total 2\n" in metrics_text(server)


def test_a_connection_whose_first_message_came_in_time_stays_open(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_HANDSHAKE_TIMEOUT": "0.5"}
    with StudioProcess(tmp_path / "h.db", env=env) as server, RawAgent(server.agent_url) as agent:
        assert agent.request(register("a1"))["type"] == "registered"
        time.sleep(1.0)  # past the deadline, checked every 0.125 s
        assert agent.request({"type": "ping"}) == {"type": "pong"}


def test_silent_connection_is_closed_after_handshake_timeout(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_HANDSHAKE_TIMEOUT": "0.5"}
    with StudioProcess(tmp_path / "h.db", env=env) as server:
        agent = RawAgent(server.agent_url)
        with pytest.raises(ConnectionClosed) as closed:
            agent.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        agent.close()


def test_a_request_head_that_never_ends_is_closed(tmp_path: Path) -> None:
    """One header line now and then held a connection for ever (hundreds starved the server)."""
    env = {"ASTER_STUDIO_HANDSHAKE_TIMEOUT": "0.5"}
    with StudioProcess(tmp_path / "slow.db", env=env) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10 * UNIT) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            for _ in range(4):  # a line every 0.3 s: never idle, never done
                time.sleep(0.3)
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert time.monotonic() - started < 5 * UNIT
        # A request that comes in time is answered, on a kept-alive connection twice.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10 * UNIT) as sock:
            for _ in range(2):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 200")


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response of a kept-alive connection: its head and body can come in two
    reads, and the next read would start with the body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_request_head_over_the_limit_is_refused_with_431(studio: StudioProcess) -> None:
    """A head of 200 MB was kept whole."""
    with socket.create_connection(("127.0.0.1", studio.port), timeout=10 * UNIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(OSError):  # it may close while we still send
            for _ in range(64):  # 1 MB of headers at most
                sock.sendall(b"X-Big: " + b"a" * 16_000 + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("size", [70_000, 66_000])
def test_a_head_over_the_limit_that_comes_in_one_read_is_refused_too(
    studio: StudioProcess, size: int
) -> None:
    """A head counted only while incomplete: one that came whole in one read was served."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", studio.port), timeout=10 * UNIT) as sock:
        sock.sendall(head)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")
    body = b'{"model": "m", "input_price_per_m": 1, "output_price_per_m": 2}' + b" " * 90_000
    with socket.create_connection(("127.0.0.1", studio.port), timeout=10 * UNIT) as sock:
        sock.sendall(  # a small head with a big body in the same read is a head under the limit
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_the_demo_deletes_its_own_database_at_exit(tmp_path: Path) -> None:
    """Every `aster-studio demo` left a database behind in the temporary folder."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aster_studio", "demo", "--port", "0", "--agents", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30 * UNIT
        for line in proc.stdout:  # until the agents stream
            if line.startswith("Demo:") or time.monotonic() > deadline:
                break
        assert list(tmp_path.glob("aster-studio-demo-*/demo.db"))  # it made one
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30 * UNIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert list(tmp_path.glob("aster-studio-demo-*")) == []
