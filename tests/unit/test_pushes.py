"""The bus's plain pushes: their wire form and the lines they become."""

from __future__ import annotations

import pytest

from mpim.bus.pushes import BadPushBatch, Delivery, PushedMessage, from_proto, to_proto
from mpim.proto import common_pb2, push_pb2
from mpim.protocol.messages import format_message, line_parts

DIRECT = common_pb2.MESSAGE_KIND_DIRECT
GROUP = common_pb2.MESSAGE_KIND_GROUP


def test_a_batch_crosses_the_wire_unchanged() -> None:
    batch = [
        Delivery(PushedMessage(1, DIRECT, 3, 4, 1_700, "hi"), [4], [9]),
        Delivery(PushedMessage(2, GROUP, 3, 8, 1_701, "yo  text=x"), [5, 6, 7], [1, 1, 40]),
        Delivery(PushedMessage(3, DIRECT, 5, 6, 1_702, "é ✓"), [6], [2]),
    ]
    wire = push_pb2.PushBatch.FromString(to_proto(batch).SerializeToString())
    assert list(wire.counts) == [1, 3, 1]
    assert list(wire.uids) == [4, 5, 6, 7, 6]
    assert from_proto(wire) == batch
    assert from_proto(to_proto([])) == []


def _wire(**changes: list[int] | list[str]) -> push_pb2.PushBatch:
    """Two messages, three recipients, with some columns replaced."""
    columns: dict[str, list[int] | list[str]] = {
        "ids": [1, 2],
        "kinds": [DIRECT, GROUP],
        "from_uids": [3, 3],
        "targets": [4, 8],
        "ts_ms": [1, 2],
        "texts": ["a", "b"],
        "counts": [1, 2],
        "uids": [4, 5, 6],
        "seqs": [1, 1, 2],
    }
    return push_pb2.PushBatch(**(columns | changes))


def test_the_columns_as_sent_are_accepted() -> None:
    assert [d.uids for d in from_proto(_wire())] == [[4], [5, 6]]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"texts": ["a"]}, "2 counts but columns of"),
        ({"ids": [1, 2, 3]}, "2 counts but columns of"),
        ({"seqs": [1, 1]}, "3 uids but 2 seqs"),
        ({"counts": [1, 1]}, "do not add up to 3"),
        ({"counts": [4, -1]}, "do not add up to 3"),
    ],
)
def test_columns_that_do_not_line_up_are_refused(
    changes: dict[str, list[int] | list[str]], error: str
) -> None:
    with pytest.raises(BadPushBatch, match=error):
        from_proto(_wire(**changes))


@pytest.mark.parametrize(
    "message",
    [
        common_pb2.Message(id=9, kind=DIRECT, from_uid=3, to_uid=4, ts_ms=1700, text="a b "),
        common_pb2.Message(id=10, kind=GROUP, from_uid=3, group_id=8, ts_ms=1, text="yo"),
    ],
)
def test_a_pushed_line_is_the_line_sync_and_pull_send(message: common_pb2.Message) -> None:
    target = message.group_id if message.kind == GROUP else message.to_uid
    sent = PushedMessage(
        message.id, message.kind, message.from_uid, target, message.ts_ms, message.text
    )
    (pushed,) = from_proto(to_proto([Delivery(sent, [4], [5])]))
    head, tail = line_parts(*pushed.message)
    assert f"{head}5{tail}" == format_message(message, 5)
