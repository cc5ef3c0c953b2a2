"""Numbering, the resend buffer and acknowledgements, sans I/O (docs/protocol.md).

The worker thread owns one `Outbox`. Every message gets the next sequence number and its encoded
bytes wait here until the server acknowledges it (reliable mode) or until it was written
(at-most-once mode). After a reconnect, `restart(last_seq)` drops what the server already stored
and queues the rest for resending, in order, with the same numbers.
"""

from __future__ import annotations

from collections import deque

_BATCH_HEAD = b'{"type":"batch","messages":['
_BATCH_TAIL = b"]}"


def batch_frame(parts: list[bytes]) -> bytes:
    """Join encoded messages into one `batch` frame without encoding them again."""
    return b"".join((_BATCH_HEAD, b",".join(parts), _BATCH_TAIL))


class Outbox:
    """Encoded, numbered messages not yet known to be stored; bounded by count and bytes."""

    __slots__ = (
        "_bytes",
        "_next_seq",
        "_rejected",
        "_sent",
        "_unsent",
        "_unsent_bytes",
        "max_bytes",
        "max_messages",
    )

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._sent: deque[tuple[int, bytes]] = deque()  # written on this connection
        self._unsent: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._unsent_bytes = 0
        self._next_seq = 1
        self._rejected: set[int] = set()

    def __len__(self) -> int:
        return len(self._sent) + len(self._unsent)

    @property
    def size_bytes(self) -> int:
        """Return the bytes held, sent or not."""
        return self._bytes

    @property
    def last_seq(self) -> int:
        """Return the last number handed out (0 before the first)."""
        return self._next_seq - 1

    @property
    def unsent(self) -> int:
        """Return how many messages wait to be written on the current connection."""
        return len(self._unsent)

    @property
    def unsent_bytes(self) -> int:
        """Return the bytes waiting to be written on the current connection."""
        return self._unsent_bytes

    @property
    def in_flight(self) -> int:
        """Return how many written messages await an acknowledgement."""
        return len(self._sent)

    def has_room(self) -> bool:
        """Return whether another message fits within the bounds."""
        return len(self) < self.max_messages and self._bytes < self.max_bytes

    def reserve(self) -> int:
        """Hand out the next sequence number."""
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def push(self, seq: int, data: bytes) -> None:
        """Queue an encoded message carrying `seq` (from `reserve`) for sending."""
        self._unsent.append((seq, data))
        self._bytes += len(data)
        self._unsent_bytes += len(data)

    def take(self, max_messages: int, max_bytes: int) -> list[bytes]:
        """Mark the next messages as written and return them: at least one, within the limits."""
        parts: list[bytes] = []
        size = 0
        unsent, sent = self._unsent, self._sent
        while unsent and len(parts) < max_messages:
            entry = unsent[0]
            length = len(entry[1]) + 1
            if parts and size + length > max_bytes:
                break
            unsent.popleft()
            sent.append(entry)
            parts.append(entry[1])
            size += length
        self._unsent_bytes -= size - len(parts)
        return parts

    def forget_sent(self) -> int:
        """Drop everything written (at-most-once mode: written is done); return how many."""
        count = len(self._sent)
        for _, data in self._sent:
            self._bytes -= len(data)
        self._sent.clear()
        return count

    def ack(self, seq: int) -> int:
        """Drop every written message numbered up to `seq`; return how many were dropped."""
        sent = self._sent
        count = 0
        while sent and sent[0][0] <= seq:
            self._bytes -= len(sent.popleft()[1])
            count += 1
        if self._rejected:
            self._rejected = {s for s in self._rejected if s > seq}
            count += self._drop_rejected_head()
        return count

    def reject(self, seq: int) -> int:
        """Record that the server refused message `seq`: it is handled and never resent."""
        if seq > self.last_seq:
            return 0
        self._rejected.add(seq)
        return self._drop_rejected_head()

    def _drop_rejected_head(self) -> int:
        sent = self._sent
        count = 0
        while sent and sent[0][0] in self._rejected:
            seq, data = sent.popleft()
            self._rejected.discard(seq)
            self._bytes -= len(data)
            count += 1
        return count

    def restart(self, last_seq: int) -> tuple[int, int]:
        """Prepare a new connection: drop what is stored (`<= last_seq`), resend the rest.

        Returns how many messages written on an earlier connection will be written again, and
        how many were dropped as handled (stored, their acks lost with the connection, or
        rejected), which count as delivered as an ack's would.
        """
        written = len(self._sent)
        pending = self._sent
        pending.extend(self._unsent)
        self._sent = deque()
        resend: deque[tuple[int, bytes]] = deque()
        resent = handled = 0
        size = 0
        for index, entry in enumerate(pending):
            if entry[0] <= last_seq or entry[0] in self._rejected:
                self._bytes -= len(entry[1])
                handled += 1
                continue
            resend.append(entry)
            size += len(entry[1])
            if index < written:
                resent += 1
        self._unsent = resend
        self._unsent_bytes = size
        self._rejected = {s for s in self._rejected if s > last_seq}
        if last_seq >= self._next_seq:
            # The server knows numbers we never handed out (a reused producer id): never reuse them.
            self._next_seq = last_seq + 1
        return resent, handled

    def delivered_through(self, seq: int) -> bool:
        """Return whether no message numbered `seq` or lower is still pending."""
        if self._sent:
            return self._sent[0][0] > seq
        if self._unsent:
            return self._unsent[0][0] > seq
        return True

    def clear(self) -> int:
        """Drop everything (the client gave up at shutdown); return how many were dropped."""
        count = len(self)
        self._sent.clear()
        self._unsent.clear()
        self._rejected.clear()
        self._bytes = self._unsent_bytes = 0
        return count
