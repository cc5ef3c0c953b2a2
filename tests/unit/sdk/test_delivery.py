"""The outbox: numbering, acknowledgements, rejections and resending after a reconnect."""

from __future__ import annotations

import json

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
    assert outbox.restart(2) == 2  # 3 and 4 were written before and go again
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
