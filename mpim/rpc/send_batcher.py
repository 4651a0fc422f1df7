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
from typing import Final, NamedTuple

from mpim.errors import ErrorCode, MpimError, error_code
from mpim.proto import message_pb2
from mpim.proto.clients import MessageServiceClient
from mpim.services.sending import SendsBySubmit, SentMessage

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 512


class Sent(NamedTuple):
    """A stored send as the message service answered it."""

    msg_id: int
    duplicate: bool


class BatchingMessageClient(SendsBySubmit, MessageServiceClient):
    """A MessageServiceClient whose Send and SendGroup go through SendBatch.

    Queued sends are kept in the request's columns, so a batch costs a few
    C-level extends rather than a protobuf message per send.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._from_uids: list[int] = []
        self._targets: list[int] = []
        self._to_group: list[bool] = []
        self._texts: list[str] = []
        self._cids: list[str] = []
        self._futures: list[asyncio.Future[SentMessage]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit_send(
        self, from_uid: int, to_uid: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        """Queue a send now; the future resolves with its outcome in the batch."""
        return self._enqueue(from_uid, to_uid, False, text, cid)

    def submit_group_send(
        self, from_uid: int, group_id: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        return self._enqueue(from_uid, group_id, True, text, cid)

    def _enqueue(
        self, from_uid: int, target: int, to_group: bool, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        # A caller that goes away cancels only its own future; the batch goes on.
        future: asyncio.Future[SentMessage] = asyncio.get_running_loop().create_future()
        self._from_uids.append(from_uid)
        self._targets.append(target)
        self._to_group.append(to_group)
        self._texts.append(text)
        self._cids.append(cid)
        self._futures.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="mpim-send-batcher")
        return future

    def _take_batch(self) -> tuple[message_pb2.SendBatchRequest, list[asyncio.Future[SentMessage]]]:
        request = message_pb2.SendBatchRequest(
            from_uids=self._from_uids[:MAX_BATCH],
            targets=self._targets[:MAX_BATCH],
            to_group=self._to_group[:MAX_BATCH],
            texts=self._texts[:MAX_BATCH],
            client_msg_ids=self._cids[:MAX_BATCH],
        )
        futures = self._futures[:MAX_BATCH]
        del self._from_uids[:MAX_BATCH], self._targets[:MAX_BATCH], self._to_group[:MAX_BATCH]
        del self._texts[:MAX_BATCH], self._cids[:MAX_BATCH], self._futures[:MAX_BATCH]
        return request, futures

    async def _flush_loop(self) -> None:
        while self._futures:
            request, futures = self._take_batch()
            try:
                reply = await self.SendBatch(request)
            except MpimError as exc:
                # Not retried: the batch may have committed. Clients retry
                # with their @cid, which makes a retry safe.
                _fail(futures, exc.code)
                continue
            columns = (reply.msg_ids, reply.duplicates, reply.errors)
            if any(len(column) != len(futures) for column in columns):
                logger.error(
                    "SendBatch answered out of shape: %s outcomes for %d sends",
                    [len(column) for column in columns],
                    len(futures),
                )
                _fail(futures, ErrorCode.INTERNAL)
                continue
            outcomes = zip(*columns, strict=True)
            for future, (msg_id, duplicate, error) in zip(futures, outcomes, strict=True):
                if future.done():
                    continue
                if error:
                    future.set_exception(MpimError(error_code(error) or ErrorCode.INTERNAL))
                else:
                    future.set_result(Sent(msg_id, duplicate))

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher


def _fail(futures: list[asyncio.Future[SentMessage]], code: ErrorCode) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(MpimError(code))
