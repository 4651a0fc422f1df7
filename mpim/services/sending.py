"""Sends queued without a coroutine: the gateway's hot path.

A message service (or a client of one) that can queue a send and hand back a
future lets the gateway spend one future per message, where a handler call
costs a task and a chain of coroutine frames. ``SendSubmitter`` is what the
dispatcher looks for; ``SendsBySubmit`` derives the interface's ``Send`` and
``SendGroup`` from the two submit methods.

The submit methods take plain values and resolve to anything with a
``msg_id`` and a ``duplicate``: in embedded mode a send never leaves the
process, and a request and a reply protobuf per message were a measurable
share of the event loop's work. Only the RPC methods speak protobuf.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from mpim.proto import message_pb2


class SentMessage(Protocol):
    """What a stored send resolves to (a SendReply is one)."""

    @property
    def msg_id(self) -> int: ...

    @property
    def duplicate(self) -> bool: ...


@runtime_checkable
class SendSubmitter(Protocol):
    def submit_send(
        self, from_uid: int, to_uid: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]: ...

    def submit_group_send(
        self, from_uid: int, group_id: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]: ...


class SendsBySubmit:
    """``Send``/``SendGroup`` of ``MessageService`` in terms of the submit methods.

    Bad input raises from ``submit_*`` at once; the future resolves with the
    outcome after the send is stored, or with its ``MpimError``. A caller
    that goes away cancels only its own future: the send stays queued.
    """

    def submit_send(
        self, from_uid: int, to_uid: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        raise NotImplementedError

    def submit_group_send(
        self, from_uid: int, group_id: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        raise NotImplementedError

    async def Send(self, request: message_pb2.SendRequest) -> message_pb2.SendReply:
        return send_reply(
            await self.submit_send(
                request.from_uid, request.to_uid, request.text, request.client_msg_id
            )
        )

    async def SendGroup(self, request: message_pb2.SendGroupRequest) -> message_pb2.SendReply:
        return send_reply(
            await self.submit_group_send(
                request.from_uid, request.group_id, request.text, request.client_msg_id
            )
        )


def send_reply(outcome: SentMessage) -> message_pb2.SendReply:
    return message_pb2.SendReply(msg_id=outcome.msg_id, duplicate=outcome.duplicate)
