"""What the push bus carries, as plain Python objects, and its wire form.

In embedded mode a push never leaves the process, yet building a
``PushBatch`` protobuf and reading it back in the gateway cost about 4.6 µs
per message (measured: 6.2 µs per message through protobuf, 1.6 µs through
tuples), a seventh of the event loop's whole cost of a message. So the bus
speaks these tuples, and only the Redis adapter turns them into push.proto's
``PushBatch`` on the wire (``to_proto``) and back (``from_proto``), in
columns (see push.proto).
"""

from __future__ import annotations

from typing import NamedTuple

from mpim.proto import push_pb2


class PushedMessage(NamedTuple):
    """A stored message as its recipients see it, minus their own seq."""

    msg_id: int
    kind: int  # a common_pb2.MessageKind
    from_uid: int
    target: int  # the recipient of a direct message, the group of a group message
    ts_ms: int
    text: str


class Delivery(NamedTuple):
    """One message for some users on one gateway: (uids[i], seqs[i]) each."""

    message: PushedMessage
    uids: list[int]
    seqs: list[int]


PushBatch = list[Delivery]


class BadPushBatch(ValueError):
    """A decodable PushBatch that no message service writes."""


def to_proto(batch: PushBatch) -> push_pb2.PushBatch:
    if not batch:
        return push_pb2.PushBatch()
    # PushedMessage is a tuple: zip transposes the messages into columns in C.
    ids, kinds, from_uids, targets, ts_ms, texts = zip(*[d.message for d in batch], strict=True)
    uids: list[int] = []
    seqs: list[int] = []
    for delivery in batch:
        uids += delivery.uids
        seqs += delivery.seqs
    return push_pb2.PushBatch(
        ids=ids,
        kinds=kinds,
        from_uids=from_uids,
        targets=targets,
        ts_ms=ts_ms,
        texts=texts,
        counts=[len(d.uids) for d in batch],
        uids=uids,
        seqs=seqs,
    )


def from_proto(wire: push_pb2.PushBatch) -> PushBatch:
    """Raises BadPushBatch when the columns do not line up."""
    columns = (wire.ids, wire.kinds, wire.from_uids, wire.targets, wire.ts_ms, wire.texts)
    counts = list(wire.counts)
    if any(len(column) != len(counts) for column in columns):
        raise BadPushBatch(f"{len(counts)} counts but columns of {[len(c) for c in columns]}")
    uids, seqs = list(wire.uids), list(wire.seqs)
    if len(uids) != len(seqs):
        raise BadPushBatch(f"{len(uids)} uids but {len(seqs)} seqs")
    if sum(counts) != len(uids) or min(counts, default=0) < 0:
        raise BadPushBatch(f"counts {counts[:8]}... do not add up to {len(uids)} recipients")
    batch: PushBatch = []
    at = 0
    for message, count in zip(
        map(PushedMessage._make, zip(*columns, strict=True)), counts, strict=True
    ):
        end = at + count
        batch.append(Delivery(message, uids[at:end], seqs[at:end]))
        at = end
    return batch
