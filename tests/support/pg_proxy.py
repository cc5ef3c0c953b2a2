"""A TCP proxy in front of the test PostgreSQL that can lose the reply to one COMMIT.

The server commits, and the client's connection is cut before it hears so: the one fault
after which a client cannot know whether its transaction committed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

# What a simple-query COMMIT carries on the wire: psycopg ends a transaction block with it.
COMMIT = b"COMMIT\x00"


class CommitCutter:
    """Forward every connection to the server at `host:port`; once armed, pass the next
    COMMIT on and cut its connection instead of relaying the reply."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.cuts = 0

    def dsn(self, dsn: str) -> str:
        """`dsn`, through this proxy, without TLS (the proxy must read the messages)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(dsn, host="127.0.0.1", port=str(self.port), sslmode="disable")

    def arm(self) -> None:
        self._armed.set()

    def __enter__(self) -> CommitCutter:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        with self._lock:
            for sock in self._sockets:
                _close(sock)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self._target, timeout=5)
            server.settimeout(None)
            cut = threading.Event()
            with self._lock:
                self._sockets += [client, server]
            self._spawn(self._pump, client, server, cut, True)
            self._spawn(self._pump, server, client, cut, False)

    def _pump(self, src: socket.socket, dst: socket.socket, cut: threading.Event, up: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if up and COMMIT in data and self._armed.is_set():
                self._armed.clear()
                cut.set()  # before the server can answer: its reply is not passed on
                with self._lock:
                    self.cuts += 1
            elif not up and cut.is_set():
                break  # the reply to the COMMIT: the server has committed
            try:
                dst.sendall(data)
            except OSError:
                break
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
