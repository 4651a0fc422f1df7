"""The gateway's side of SendBatch: many sends per RPC, in submission order.

One RPC per chat message caps a gateway at a few thousand messages per
second. Sends are queued here and carried in SendBatch calls, one call in
flight at a time, so a connection's sends keep their order even across
several message-service instances, and batches grow with the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from mpim.errors import ErrorCode, MpimError, error_code
from mpim.proto import message_pb2
from mpim.proto.clients import MessageServiceClient
from mpim.services.sending import SendsBySubmit, SentMessage

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 512


class BatchingMessageClient(SendsBySubmit, MessageServiceClient):
    """A MessageServiceClient whose Send and SendGroup go through SendBatch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._queue: list[tuple[message_pb2.SendItem, asyncio.Future[SentMessage]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit_send(
        self, from_uid: int, to_uid: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        """Queue a send now; the future resolves with its outcome in the batch."""
        request = message_pb2.SendRequest(
            from_uid=from_uid, to_uid=to_uid, text=text, client_msg_id=cid
        )
        return self._enqueue(message_pb2.SendItem(direct=request))

    def submit_group_send(
        self, from_uid: int, group_id: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        request = message_pb2.SendGroupRequest(
            from_uid=from_uid, group_id=group_id, text=text, client_msg_id=cid
        )
        return self._enqueue(message_pb2.SendItem(group=request))

    def _enqueue(self, item: message_pb2.SendItem) -> asyncio.Future[SentMessage]:
        # A caller that goes away cancels only its own future; the batch goes on.
        future: asyncio.Future[SentMessage] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="mpim-send-batcher")
        return future

    async def _flush_loop(self) -> None:
        while self._queue:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            request = message_pb2.SendBatchRequest(items=[item for item, _ in batch])
            try:
                reply = await self.SendBatch(request)
            except MpimError as exc:
                # Not retried: the batch may have committed. Clients retry
                # with their @cid, which makes a retry safe.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(MpimError(exc.code))
                continue
            for (_, future), outcome in zip(batch, reply.outcomes, strict=True):
                if future.done():
                    continue
                if outcome.error:
                    code = error_code(outcome.error) or ErrorCode.INTERNAL
                    future.set_exception(MpimError(code))
                else:
                    future.set_result(outcome.reply)

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
