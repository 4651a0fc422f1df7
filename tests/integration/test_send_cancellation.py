"""A send whose caller goes away mid-commit: nothing else in its batch is hurt.

The message service's futures are awaited unshielded, so cancelling one
caller cancels only that caller's future; the message stays queued and the
group commit, awaited by the flush task, goes on for every other sender.
"""

from __future__ import annotations

import asyncio

from mpim.proto import message_pb2
from tests.conftest import RunningServer
from tests.support.checks import uid_of


async def test_cancelling_one_send_leaves_its_batch_and_its_message_intact(
    server: RunningServer,
) -> None:
    alice = await server.user()
    carol = await server.user()
    bob = await server.user()
    service = server.runtime.message

    def send(sender: int, text: str) -> asyncio.Task[message_pb2.SendReply]:
        request = message_pb2.SendRequest(from_uid=sender, to_uid=uid_of(bob), text=text)
        return asyncio.get_running_loop().create_task(service.Send(request))

    # Created in one pass, so all three queue before the first commit starts.
    first = send(uid_of(carol), "before")
    doomed = send(uid_of(alice), "abandoned")
    last = send(uid_of(carol), "after")
    await asyncio.sleep(0)  # each task has queued its message
    doomed.cancel()
    replies = await asyncio.gather(first, last)
    assert all(reply.msg_id > 0 for reply in replies)
    assert doomed.cancelled()

    # Queued before the cancel, the abandoned message was committed in order.
    reply = await service.Sync(message_pb2.SyncRequest(uid=uid_of(bob), after_seq=0))
    assert [m.text for m in reply.messages] == ["before", "abandoned", "after"]
    assert [m.seq for m in reply.messages] == [1, 2, 3]
