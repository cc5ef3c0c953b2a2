"""One agent connection's state and its bounded outbox of replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aster_studio_sdk.protocol import MessageType, Shape, encode_reply

from ..models import AgentKey

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one agent connection may do; exceeding a limit is answered and counted."""

    messages_per_s: float = 50_000.0
    burst: int = 100_000
    max_agents: int = 1_000
    max_sessions: int = 100_000
    max_in_flight: int = 500  # writes queued but not yet committed, per connection


Close = Callable[[int, str], Awaitable[None]]


@dataclass(eq=False, slots=True)
class AgentConnection:
    """Per-connection state; replies go through an outbox drained by a sender task.

    A client may never read: the outbox is bounded (oldest replies dropped, counted) and acks
    are coalesced into one slot, so nothing piles up and reading is never stalled by writing.
    """

    id: int
    remote: str
    outbox_max: int
    shape: Shape | None = None
    producer_id: str | None = None
    taken_over: bool = False  # a newer connection of the same producer replaced this one
    unmarked_seq: int = 0  # highest numbered message handled but not yet marked for storage
    accepts_control: bool = False  # registered with a producer id or the "control" capability
    key: AgentKey | None = None  # the agent key it authenticated with, if auth is on
    allowed: set[str] = field(default_factory=set)  # agent ids the key was checked for
    sessions: set[str] = field(default_factory=set)
    tokens: float = 0.0  # rate-limit bucket
    refilled_at: float = 0.0
    throttled: int = 0
    throttle_notice_at: float = 0.0
    in_flight: int = 0  # writes handed to the pipeline, not yet committed
    max_in_flight: int = 2_000
    space: asyncio.Event | None = None  # made when the connection first waits for the writer
    agents: set[str] = field(default_factory=set)
    outbox: deque[bytes] = field(default_factory=deque)
    ack_seq: int | None = None  # an ack to send
    acked: int = 0  # the highest ack sent or to send: never the same one twice
    close_request: tuple[int, str] | None = None
    deferred: int = 0  # replies waiting for a commit; later replies queue behind them
    dropped_replies: int = 0
    received: int = 0
    # The sender task exists only while there is something to send: an idle connection holds
    # no task (10,000 idle agents is a target; see docs/benchmarks.md).
    transport: tuple[SendText, Close] | None = None
    sender: asyncio.Task[None] | None = None

    def landed(self, count: int) -> None:
        """`count` of this connection's writes were committed: read again once below half."""
        self.in_flight -= count
        if self.space is not None and self.in_flight <= self.max_in_flight // 2:
            self.space.set()

    async def wait_for_writer(self) -> None:
        """Wait until enough of this connection's writes are committed to read again."""
        if self.space is None:
            self.space = asyncio.Event()
        self.space.clear()
        await self.space.wait()

    @property
    def reply_shape(self) -> Shape:
        return self.shape or Shape.FLAT

    def reply(self, mtype: MessageType, data: dict[str, object] | None = None) -> None:
        if len(self.outbox) >= self.outbox_max:
            self.outbox.popleft()
            self.dropped_replies += 1
        self.outbox.append(encode_reply(self.reply_shape, mtype, data))
        self._kick()

    def ack(self, seq: int) -> None:
        if seq > self.acked:
            self.acked = self.ack_seq = seq
            self._kick()

    def request_close(self, code: int, reason: str) -> None:
        self.close_request = (code, reason)
        self._kick()

    def attach(self, send: SendText, close: Close) -> None:
        """Connect the outbox to the socket; replies queued before this go out now."""
        self.transport = (send, close)
        self._kick()

    def stop_sending(self) -> asyncio.Task[None] | None:
        """Stop sending (the socket is gone); returns the cancelled sender, if one ran."""
        self.transport = None
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.cancel()
        return sender

    async def detach(self) -> None:
        """Stop sending and wait until the sender has ended."""
        sender = self.stop_sending()
        if sender is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    def _kick(self) -> None:
        if self.sender is None and self.transport is not None:
            self.sender = asyncio.get_running_loop().create_task(self._drain(*self.transport))

    async def _drain(self, send: SendText, close: Close) -> None:
        """Send everything queued, then end; the next reply starts a new drain."""
        try:
            while self.outbox or self.ack_seq is not None or self.close_request is not None:
                while self.outbox:
                    await send(self.outbox.popleft().decode())
                if self.ack_seq is not None:
                    seq, self.ack_seq = self.ack_seq, None
                    ack = encode_reply(self.reply_shape, MessageType.ACK, {"seq": seq})
                    await send(ack.decode())
                if self.close_request is not None:
                    code, reason = self.close_request
                    self.transport = None  # nothing more goes out after the close
                    await close(code, reason)
                    return
        finally:
            self.sender = None
