"""Sends queued without a coroutine: the gateway's hot path.

A message service (or a client of one) that can queue a send and hand back a
future lets the gateway spend one future per message, where a handler call
costs a task and a chain of coroutine frames. ``SendSubmitter`` is what the
dispatcher looks for; ``SendsBySubmit`` derives the interface's ``Send`` and
``SendGroup`` from the two submit methods.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from mpim.proto import message_pb2


@runtime_checkable
class SendSubmitter(Protocol):
    def submit_send(
        self, request: message_pb2.SendRequest
    ) -> asyncio.Future[message_pb2.SendReply]: ...

    def submit_group_send(
        self, request: message_pb2.SendGroupRequest
    ) -> asyncio.Future[message_pb2.SendReply]: ...


class SendsBySubmit:
    """``Send``/``SendGroup`` of ``MessageService`` in terms of the submit methods.

    Bad input raises from ``submit_*`` at once; the future resolves with the
    reply after the send is stored, or with its ``MpimError``. A caller that
    goes away cancels only its own future: the send stays queued.
    """

    def submit_send(
        self, request: message_pb2.SendRequest
    ) -> asyncio.Future[message_pb2.SendReply]:
        raise NotImplementedError

    def submit_group_send(
        self, request: message_pb2.SendGroupRequest
    ) -> asyncio.Future[message_pb2.SendReply]:
        raise NotImplementedError

    async def Send(self, request: message_pb2.SendRequest) -> message_pb2.SendReply:
        return await self.submit_send(request)

    async def SendGroup(self, request: message_pb2.SendGroupRequest) -> message_pb2.SendReply:
        return await self.submit_group_send(request)
