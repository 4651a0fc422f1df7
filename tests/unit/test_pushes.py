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
    ]
    wire = push_pb2.PushBatch.FromString(to_proto(batch).SerializeToString())
    assert wire.deliveries[0].message.to_uid == 4
    assert wire.deliveries[1].message.group_id == 8
    assert from_proto(wire) == batch


def test_unpaired_uids_and_seqs_are_refused() -> None:
    wire = push_pb2.PushBatch()
    wire.deliveries.add(uids=[1, 2], seqs=[1])
    with pytest.raises(BadPushBatch, match="2 uids but 1 seqs"):
        from_proto(wire)


@pytest.mark.parametrize(
    "message",
    [
        common_pb2.Message(id=9, kind=DIRECT, from_uid=3, to_uid=4, ts_ms=1700, text="a b "),
        common_pb2.Message(id=10, kind=GROUP, from_uid=3, group_id=8, ts_ms=1, text="yo"),
    ],
)
def test_a_pushed_line_is_the_line_sync_and_pull_send(message: common_pb2.Message) -> None:
    (pushed,) = from_proto(push_pb2.PushBatch(deliveries=[push_pb2.Delivery(message=message)]))
    head, tail = line_parts(*pushed.message)
    assert f"{head}5{tail}" == format_message(message, 5)
