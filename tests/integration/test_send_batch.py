"""SendBatch in columns: the gateway's batcher and the message service, through
the wire form (serialized both ways) onto a real SQLite store.

The gRPC hop itself is covered by the cluster topology of the protocol tests;
here every outcome a batch can carry is checked against what was stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mpim.errors import ErrorCode, MpimError
from mpim.proto import message_pb2
from mpim.rpc.send_batcher import BatchingMessageClient
from mpim.services.message import MessageServiceImpl
from mpim.store.database import Database
from mpim.store.groups import GroupStore
from mpim.store.messages import MessageStore
from mpim.store.users import UserStore


class WireBatcher(BatchingMessageClient):
    """The batcher, its SendBatch serialized to ``service`` and back."""

    def __init__(self, service: MessageServiceImpl) -> None:
        unused: Any = None
        super().__init__(unused, 5.0)
        self.service = service
        self.requests: list[message_pb2.SendBatchRequest] = []

    async def SendBatch(self, request: message_pb2.SendBatchRequest) -> message_pb2.SendBatchReply:
        wire = message_pb2.SendBatchRequest.FromString(request.SerializeToString())
        self.requests.append(wire)
        reply = await self.service.SendBatch(wire)
        return message_pb2.SendBatchReply.FromString(reply.SerializeToString())


@pytest.fixture
def store(db: Database) -> MessageStore:
    return MessageStore(db)


@pytest.fixture
def service(store: MessageStore) -> MessageServiceImpl:
    unused: Any = None  # pushes are not started: no presence or bus is asked
    return MessageServiceImpl(store, unused, unused, unused, unused)


async def _users(db: Database, *names: str) -> list[int]:
    users = UserStore(db)
    return [uid for name in names if (uid := await users.create_user(name, "x", 0)) is not None]


async def test_one_batch_carries_every_outcome_in_order(
    db: Database, store: MessageStore, service: MessageServiceImpl
) -> None:
    alice, bob, carol = await _users(db, "alice", "bob", "carol")
    groups = GroupStore(db)
    group = await groups.create_group(alice, "team", "", 0)
    await groups.add_member(group, bob, 0)
    batcher = WireBatcher(service)

    futures = [
        batcher.submit_send(alice, bob, "one", "c1"),
        batcher.submit_group_send(alice, group, "to the team", ""),
        batcher.submit_send(alice, alice, "to myself", ""),
        batcher.submit_send(alice, 10**9, "nobody", ""),
        batcher.submit_group_send(carol, group, "not a member", ""),
        batcher.submit_send(alice, bob, "one again", "c1"),
        batcher.submit_send(bob, alice, "two", ""),
    ]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)

    assert len(batcher.requests) == 1  # queued in one turn: one call
    assert list(batcher.requests[0].to_group) == [False, True, False, False, True, False, False]
    sent, to_team, to_self, nobody, outsider, again, back = outcomes
    assert isinstance(to_self, MpimError) and to_self.code is ErrorCode.CANNOT_SEND_TO_SELF
    assert isinstance(nobody, MpimError) and nobody.code is ErrorCode.NO_SUCH_USER
    assert isinstance(outsider, MpimError) and outsider.code is ErrorCode.NOT_MEMBER
    assert not isinstance(sent, BaseException) and not sent.duplicate
    assert not isinstance(again, BaseException) and again.duplicate
    assert again.msg_id == sent.msg_id
    assert not isinstance(to_team, BaseException) and not isinstance(back, BaseException)
    assert sent.msg_id < to_team.msg_id < back.msg_id  # committed in submission order
    messages, _, _ = await store.sync(bob, 0, 10)
    stored = [(m.id, m.text) for m in messages]
    assert stored == [(sent.msg_id, "one"), (to_team.msg_id, "to the team")]


async def test_columns_of_different_lengths_are_refused_before_anything_is_stored(
    db: Database, store: MessageStore, service: MessageServiceImpl
) -> None:
    alice, bob = await _users(db, "alice", "bob")
    request = message_pb2.SendBatchRequest(
        from_uids=[alice, alice], targets=[bob, bob], to_group=[False], texts=["a", "b"]
    )
    with pytest.raises(ValueError, match="columns"):
        await service.SendBatch(request)
    messages, _, _ = await store.sync(bob, 0, 10)
    assert messages == []


class ShortReply(WireBatcher):
    """A message service answering one outcome short: a bug to survive."""

    async def SendBatch(self, request: message_pb2.SendBatchRequest) -> message_pb2.SendBatchReply:
        reply = await super().SendBatch(request)
        del reply.errors[-1]
        return reply


async def test_a_reply_out_of_shape_fails_its_sends_and_the_next_batch_goes_on(
    db: Database, service: MessageServiceImpl, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await _users(db, "alice", "bob")
    batcher = ShortReply(service)
    first = [batcher.submit_send(alice, bob, f"m{i}", "") for i in range(3)]
    with caplog.at_level(logging.ERROR, logger="mpim.rpc.send_batcher"):
        outcomes = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(o, MpimError) and o.code is ErrorCode.INTERNAL for o in outcomes)
    assert "out of shape" in caplog.text

    batcher.__class__ = WireBatcher  # the service is mended
    later = await batcher.submit_send(alice, bob, "later", "")
    assert later.msg_id > 0
