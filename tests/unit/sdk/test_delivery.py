"""The outbox: numbering, acknowledgements, rejections and resending after a reconnect."""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aster_studio_sdk._delivery import Outbox, batch_frame


def filled(count: int, *, max_messages: int = 100, max_bytes: int = 1 << 20) -> Outbox:
    outbox = Outbox(max_messages, max_bytes)
    for _ in range(count):
        seq = outbox.reserve()
        outbox.push(seq, b'{"seq":%d}' % seq)
    return outbox


def seqs(parts: list[bytes]) -> list[int]:
    return [json.loads(p)["seq"] for p in parts]


def test_numbers_start_at_one_and_increase() -> None:
    outbox = filled(3)
    assert seqs(outbox.take(10, 1 << 20)) == [1, 2, 3]
    assert outbox.last_seq == 3


def test_take_respects_message_and_byte_limits() -> None:
    outbox = filled(10)
    assert len(outbox.take(4, 1 << 20)) == 4
    assert len(outbox.take(100, 20)) == 2  # each part is 9 or 10 bytes plus a comma
    assert outbox.unsent == 4


def test_take_returns_one_oversized_message_alone() -> None:
    outbox = filled(2)
    assert len(outbox.take(10, 1)) == 1


def test_ack_drops_written_messages_up_to_the_number() -> None:
    outbox = filled(5)
    outbox.take(5, 1 << 20)
    assert outbox.ack(3) == 3
    assert len(outbox) == 2
    assert not outbox.delivered_through(4)
    assert outbox.ack(5) == 2
    assert outbox.delivered_through(5)
    assert outbox.size_bytes == 0


def test_restart_drops_stored_and_resends_the_rest_in_order() -> None:
    outbox = filled(6)
    outbox.take(4, 1 << 20)
    # 3 and 4 were written before and go again; 1 and 2 are stored (their acks were lost)
    assert outbox.restart(2) == (2, 2)
    assert seqs(outbox.take(10, 1 << 20)) == [3, 4, 5, 6]


def test_restart_with_a_higher_server_number_never_reuses_numbers() -> None:
    outbox = filled(2)
    outbox.restart(50)
    assert len(outbox) == 0
    assert outbox.reserve() == 51


def test_rejected_message_counts_as_handled_and_is_not_resent() -> None:
    outbox = filled(3)
    outbox.take(3, 1 << 20)
    assert outbox.reject(2) == 0  # 1 is still unacknowledged ahead of it
    assert outbox.ack(1) == 2  # 1 acked, then rejected 2 leaves too
    outbox.restart(0)
    assert seqs(outbox.take(10, 1 << 20)) == [3]


def test_forget_sent_empties_written_messages() -> None:
    outbox = filled(3)
    outbox.take(2, 1 << 20)
    assert outbox.forget_sent() == 2
    assert len(outbox) == 1


def test_room_is_bounded_by_count_and_bytes() -> None:
    assert not filled(3, max_messages=3).has_room()
    assert not filled(3, max_bytes=20).has_room()
    assert filled(2, max_messages=3).has_room()


def test_batch_frame_is_a_valid_batch_message() -> None:
    frame = batch_frame([b'{"type":"ping","seq":1}', b'{"type":"ping","seq":2}'])
    assert json.loads(frame) == {
        "type": "batch",
        "messages": [{"type": "ping", "seq": 1}, {"type": "ping", "seq": 2}],
    }


class OutboxMachine(RuleBasedStateMachine):
    """Random pushes, sends, acks, rejections and reconnects against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.outbox = Outbox(1_000, 1 << 20)
        self.pending: list[int] = []  # the model: numbers not yet handled, in order
        self.handled: set[int] = set()
        self.written: set[int] = set()  # written on the current connection
        self.pushed = 0
        self.counted = 0  # what ack, reject and restart reported as handled

    @rule(count=st.integers(1, 5))
    def push(self, count: int) -> None:
        for _ in range(count):
            seq = self.outbox.reserve()
            self.outbox.push(seq, b'{"seq":%d}' % seq)
            self.pending.append(seq)
            self.pushed += 1

    @rule(limit=st.integers(1, 4))
    def send(self, limit: int) -> None:
        parts = self.outbox.take(limit, 1 << 20)
        unsent = [s for s in self.pending if s not in self.written]
        assert seqs(parts) == unsent[: len(parts)]
        self.written.update(seqs(parts))

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        if not self.written:
            return
        seq = data.draw(st.sampled_from(sorted(self.written)))
        self.counted += self.outbox.ack(seq)
        self.handle(lambda s: s <= seq)

    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        if not self.written:
            return
        seq = data.draw(st.sampled_from(sorted(self.written)))
        self.counted += self.outbox.reject(seq)
        self.handle(lambda s: s == seq)

    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        # The server has stored some prefix of what was written (never more).
        stored = [s for s in self.pending if s in self.written]
        last = data.draw(st.sampled_from([0, *stored])) if stored else 0
        last = max(last, max(self.handled, default=0) if last else 0)
        self.counted += self.outbox.restart(last)[1]
        self.handle(lambda s: s <= last)
        self.written.clear()

    def handle(self, done: Callable[[int], bool]) -> None:
        for s in self.pending:
            if done(s):
                self.handled.add(s)
        self.pending = [s for s in self.pending if not done(s)]
        self.written &= set(self.pending)

    @invariant()
    def delivered_through_matches_model(self) -> None:
        oldest = self.pending[0] if self.pending else None
        for seq in (1, self.outbox.last_seq):
            expected = oldest is None or oldest > seq
            # a rejected message may still sit behind an unacknowledged one: the outbox is
            # allowed to be more conservative than the model, never less
            if self.outbox.delivered_through(seq):
                assert expected

    @invariant()
    def every_message_that_left_was_counted_once(self) -> None:
        assert self.counted == self.pushed - len(self.outbox)

    @invariant()
    def resend_never_includes_handled_messages(self) -> None:
        assert len(self.outbox) >= len(self.pending)


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
