"""The agent socket's pure parts: the upgrade request, the accept key, and running a handler."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aster_studio.agent_socket import accept_key, finish, parse_upgrade

RFC_REQUEST = (
    b"GET /v1/remote-agents/connect?token=t HTTP/1.1\r\nHost: server.example.com\r\n"
    b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_the_rfc_example_is_accepted_with_its_key() -> None:
    parsed = parse_upgrade(RFC_REQUEST)
    assert parsed is not None
    method, target, headers = parsed
    assert (method, target) == (b"GET", b"/v1/remote-agents/connect?token=t")
    assert accept_key(headers) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Upgrade: websocket", b"Upgrade: h2c"),
        (b"Connection: keep-alive, Upgrade", b"Connection: keep-alive"),
        (b"Version: 13", b"Version: 8"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),  # 5 bytes, not 16
    ],
)
def test_an_upgrade_websockets_would_refuse_is_not_taken(old: bytes, new: bytes) -> None:
    parsed = parse_upgrade(RFC_REQUEST.replace(old, new))
    assert parsed is not None
    assert accept_key(parsed[2]) is None


def test_a_repeated_key_header_is_not_taken() -> None:
    doubled = RFC_REQUEST.replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    parsed = parse_upgrade(doubled)
    assert parsed is not None and accept_key(parsed[2]) is None


@pytest.mark.parametrize(
    "head", [b"GET / HTTP/1.0\r\n\r\n", b"nonsense\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n"]
)
def test_a_malformed_request_head_is_none(head: bytes) -> None:
    assert parse_upgrade(head) is None


async def _started(handling: Any) -> Any:
    """Take the first step of `handling` as the agent socket does, then finish it in a task."""
    waited_on = handling.send(None)
    return asyncio.get_running_loop().create_task(finish(handling, waited_on))


async def test_finish_runs_the_rest_of_a_handler_through_every_kind_of_wait() -> None:
    steps: list[object] = []
    loop = asyncio.get_running_loop()
    later: asyncio.Future[str] = loop.create_future()
    failing: asyncio.Future[str] = loop.create_future()

    async def handler() -> None:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append(await later)
        try:
            await failing
        except ValueError as exc:
            steps.append(str(exc))
        await asyncio.sleep(0.01)
        steps.append("done")

    task = await _started(handler())
    assert steps == ["first"]
    loop.call_later(0.01, later.set_result, "result")
    loop.call_later(0.02, failing.set_exception, ValueError("raised"))
    await asyncio.wait_for(task, 5)
    assert steps == ["first", "result", "raised", "done"]


async def test_cancelling_the_task_cancels_the_handler_where_it_waits() -> None:
    seen: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler() -> None:
        await asyncio.sleep(0)
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = await _started(handler())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert never.cancelled()
