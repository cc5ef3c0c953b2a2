"""One agent connection's state and its bounded outbox of replies."""

from __future__ import annotations

import asyncio
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
    space: asyncio.Event = field(default_factory=asyncio.Event)
    agents: set[str] = field(default_factory=set)
    outbox: deque[bytes] = field(default_factory=deque)
    ack_seq: int | None = None
    close_request: tuple[int, str] | None = None
    deferred: int = 0  # replies waiting for a commit; later replies queue behind them
    dropped_replies: int = 0
    received: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def landed(self, count: int) -> None:
        """`count` of this connection's writes were committed: read again once below half."""
        self.in_flight -= count
        if self.in_flight <= self.max_in_flight // 2:
            self.space.set()

    @property
    def reply_shape(self) -> Shape:
        return self.shape or Shape.FLAT

    def reply(self, mtype: MessageType, data: dict[str, object] | None = None) -> None:
        if len(self.outbox) >= self.outbox_max:
            self.outbox.popleft()
            self.dropped_replies += 1
        self.outbox.append(encode_reply(self.reply_shape, mtype, data))
        self.wake.set()

    def ack(self, seq: int) -> None:
        if self.ack_seq is None or seq > self.ack_seq:
            self.ack_seq = seq
            self.wake.set()

    def request_close(self, code: int, reason: str) -> None:
        self.close_request = (code, reason)
        self.wake.set()

    async def run_sender(self, send: SendText, close: Close) -> None:
        """Send queued replies until cancelled or asked to close."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                await send(self.outbox.popleft().decode())
            if self.ack_seq is not None:
                seq, self.ack_seq = self.ack_seq, None
                await send(encode_reply(self.reply_shape, MessageType.ACK, {"seq": seq}).decode())
            if self.close_request is not None:
                await close(*self.close_request)
                return
