"""uvicorn's HTTP protocol with a deadline and a size limit on each request's head.

uvicorn (httptools) waits for a request's head for ever and keeps all of it: a client that
sends one header line every few seconds held its connection (and file descriptor) open
indefinitely, hundreds of them starved the server, and one head of 200 MB took as much memory.
Here the head must arrive within `head_timeout_s` (408) and stay under `max_head_bytes` (431).
WebSocket upgrades pass through as before: their head is complete when they are handed over.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; browsers send a few KB

_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class HeadLimitedHttp(HttpToolsProtocol):
    """An HTTP connection whose every request head has a deadline and a size limit."""

    head_timeout_s = 30.0
    max_head_bytes = MAX_HEAD_BYTES
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    _tail = b""  # the last bytes of the head so far: its end may come split across reads

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            # Counted before parsing, up to the head's end (a read may carry a body too): a
            # head that came whole in one read was parsed and served before it was counted.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(end + 4 - len(self._tail), 0)
            self._tail = seen[-3:]
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_head()  # a kept-alive connection's next request

    def _start_head(self) -> None:
        self._end_head()
        self._head_bytes = 0
        self._tail = b""
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._refuse, 408)

    def _end_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int) -> None:
        self._end_head()
        if not self.transport.is_closing():
            self.transport.write(
                _REFUSALS[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()


def head_limited_http(head_timeout_s: float) -> type[HeadLimitedHttp]:
    """What uvicorn's `http` setting takes: the protocol class, with this deadline."""
    return type("HeadLimitedHttp", (HeadLimitedHttp,), {"head_timeout_s": head_timeout_s})


__all__ = ["MAX_HEAD_BYTES", "HeadLimitedHttp", "head_limited_http"]
