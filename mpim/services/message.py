"""Message service: durable sends with group commit, inbox reads, push fan-out.

A send is acknowledged only after the batch holding it is committed. Pushes
are a notification on top of the durable inbox: after each commit one task
looks up where the recipients are connected and publishes one batch per
gateway, in commit order, so every connection sees its messages in seq order.
A push that is dropped (full queue, bus down) loses nothing: SYNC repairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from mpim.bus.base import Bus
from mpim.bus.pushes import Delivery, PushBatch, PushedMessage
from mpim.errors import ErrorCode, MpimError
from mpim.ids import SnowflakeIds
from mpim.metrics.families import MessageMetrics
from mpim.proto import common_pb2, group_pb2, message_pb2, user_pb2
from mpim.proto.interfaces import GroupService, PresenceService, UserService
from mpim.protocol.commands import HISTORY_MAX_LIMIT, ParseLimits, parse_text
from mpim.services.routing import route_lookup
from mpim.services.sending import SendsBySubmit, SentMessage
from mpim.store.failures import StoreUnavailable
from mpim.store.messages import (
    DIRECT,
    GROUP,
    MessageStore,
    NewMessage,
    StoredMessage,
    direct_conversation,
    group_conversation,
)

logger = logging.getLogger(__name__)

_EMPTY = common_pb2.Empty()
_DEFAULT_PAGE = 500
_MAX_PAGE = 10_000


def _page(limit: int) -> int:
    return _DEFAULT_PAGE if limit <= 0 else min(limit, _MAX_PAGE)


FOLD_WINDOW = 1000  # users looked at per pass
FOLD_USERS = 64  # users whose floors one pass moves, at most


class MessageServiceImpl(SendsBySubmit):
    """Implements mpim.proto.interfaces.MessageService."""

    def __init__(
        self,
        store: MessageStore,
        users: UserService,
        groups: GroupService,
        presence: PresenceService,
        bus: Bus,
        *,
        worker_id: int = 0,
        max_batch: int = 1000,
        fold_marks_seconds: float = 0.0,
        max_text_bytes: int = 16 * 1024,
        push_queue_batches: int = 1024,
        metrics: MessageMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics if metrics is not None else MessageMetrics()
        self._users = users
        self._groups = groups
        self._routes = route_lookup(presence)
        self._bus = bus
        self._ids = SnowflakeIds(worker_id)
        self._max_batch = max_batch
        self._limits = ParseLimits(max_text_bytes=max_text_bytes)
        self._pending: list[tuple[NewMessage, asyncio.Future[SentMessage]]] = []
        # With one writer (SQLite) delivered marks wait for the next commit of
        # sends rather than make their own: under load that halves the commits.
        self._pending_marks: list[tuple[int, int]] = []
        self._mark_waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._push_queue: asyncio.Queue[list[StoredMessage]] = asyncio.Queue(push_queue_batches)
        self._pusher: asyncio.Task[None] | None = None
        self.pushes_dropped = 0
        self._fold_seconds = fold_marks_seconds
        self._folder: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pusher = asyncio.create_task(self._push_loop(), name="mpim-push")
        if self._fold_seconds > 0 and not self._store.marks_ride_with_sends:
            self._folder = asyncio.create_task(self._fold_loop(), name="mpim-fold-marks")

    async def stop(self) -> None:
        """Commit what is queued, then stop pushing."""
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._folder is not None:
            self._folder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._folder
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher

    # -- sending -------------------------------------------------------------

    # Sends queue their message before their first await, so the order in
    # which a connection submits them is the order they commit in: pipelined
    # sends keep their order. The recipient and membership checks run in the
    # storing transaction.

    def submit_send(
        self, from_uid: int, to_uid: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        """Queue a send now; the future resolves after its commit (see SendsBySubmit)."""
        text = parse_text(text, self._limits)
        if to_uid == from_uid:
            raise MpimError(ErrorCode.CANNOT_SEND_TO_SELF)
        return self._submit(DIRECT, from_uid, to_uid, text, cid)

    def submit_group_send(
        self, from_uid: int, group_id: int, text: str, cid: str
    ) -> asyncio.Future[SentMessage]:
        text = parse_text(text, self._limits)
        return self._submit(GROUP, from_uid, group_id, text, cid)

    async def SendBatch(self, request: message_pb2.SendBatchRequest) -> message_pb2.SendBatchReply:
        # Each send is queued before the first await, so the batch commits in
        # the order given.
        columns = (
            request.from_uids,
            request.targets,
            request.to_group,
            request.texts,
            request.client_msg_ids,
        )
        if len({len(column) for column in columns}) > 1:  # before any is queued
            raise ValueError(f"SendBatch columns of {[len(c) for c in columns]} sends")
        queued: list[asyncio.Future[SentMessage] | MpimError] = []
        for from_uid, target, to_group, text, cid in zip(*columns, strict=True):
            try:
                if to_group:
                    queued.append(self.submit_group_send(from_uid, target, text, cid))
                else:
                    queued.append(self.submit_send(from_uid, target, text, cid))
            except MpimError as exc:
                queued.append(exc)
        msg_ids: list[int] = []
        duplicates: list[bool] = []
        errors: list[str] = []
        for future in queued:
            try:
                if isinstance(future, MpimError):
                    raise future
                sent = await future
            except MpimError as exc:
                msg_ids.append(0)
                duplicates.append(False)
                errors.append(exc.code.value)
            else:
                msg_ids.append(sent.msg_id)
                duplicates.append(sent.duplicate)
                errors.append("")
        return message_pb2.SendBatchReply(msg_ids=msg_ids, duplicates=duplicates, errors=errors)

    def _submit(
        self,
        kind: common_pb2.MessageKind,
        sender: int,
        target: int,
        text: str,
        cid: str,
    ) -> asyncio.Future[SentMessage]:
        msg_id, ts_ms = self._ids.next_id_at()
        message = NewMessage(msg_id, kind, sender, target, ts_ms, text, cid or None)
        # A caller that goes away cancels only its own future: the message
        # stays queued and the commit, awaited by the flush task, goes on.
        future: asyncio.Future[SentMessage] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        self._flush_soon()
        return future

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="mpim-group-commit")

    async def _flush_loop(self) -> None:
        """One batch in flight at a time: whatever queued meanwhile is the next."""
        while self._pending or self._pending_marks:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            marks, self._pending_marks = self._pending_marks, []
            mark_waiters, self._mark_waiters = self._mark_waiters, []
            if batch:
                self._metrics.batch_size.observe(len(batch))
            try:
                results = await self._store.append([m for m, _ in batch], marks)
            except Exception as exc:
                self._metrics.store_failures.inc(len(batch))
                logger.error(
                    "storing %d messages and %d marks failed: %r", len(batch), len(marks), exc
                )
                failed = [future for _, future in batch] + mark_waiters
                for waiter in failed:
                    if not waiter.done():
                        waiter.set_exception(MpimError(ErrorCode.SERVICE_UNAVAILABLE))
                continue
            for waiter in mark_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._queue_push([r for r in results if r.deliveries])
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if result.error is not None:
                    future.set_exception(MpimError(result.error))
                else:
                    future.set_result(result)

    # -- pushing -------------------------------------------------------------

    def _queue_push(self, stored: list[StoredMessage]) -> None:
        if not stored:
            return
        try:
            self._push_queue.put_nowait(stored)
        except asyncio.QueueFull:
            self.pushes_dropped += len(stored)
            self._metrics.pushes_dropped.inc(len(stored))
            logger.warning("push queue full; %d messages left for SYNC/PULL", len(stored))

    async def _push_loop(self) -> None:
        while True:
            stored = await self._push_queue.get()
            try:
                await self._push(stored)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("push of %d messages failed; SYNC/PULL will deliver", len(stored))

    async def _push(self, stored: list[StoredMessage]) -> None:
        uids = {uid for s in stored for uid, _ in s.deliveries}
        gateways_of = await self._routes.gateways_of(uids)
        if not gateways_of:
            return
        batches: dict[str, PushBatch] = defaultdict(list)
        for s in stored:
            m = s.message
            message = PushedMessage(m.msg_id, m.kind, m.sender, m.target, m.ts_ms, m.text)
            if len(s.deliveries) == 1:  # a direct message: no grouping needed
                uid, seq = s.deliveries[0]
                for gateway_id in gateways_of.get(uid, ()):
                    batches[gateway_id].append(Delivery(message, [uid], [seq]))
                continue
            # gateway -> (uids, seqs) of this message's recipients it holds
            per_gateway: dict[str, tuple[list[int], list[int]]] = {}
            for uid, seq in s.deliveries:
                for gateway_id in gateways_of.get(uid, ()):
                    targets = per_gateway.get(gateway_id)
                    if targets is None:
                        targets = per_gateway[gateway_id] = ([], [])
                    targets[0].append(uid)
                    targets[1].append(seq)
            for gateway_id, (to_uids, to_seqs) in per_gateway.items():
                batches[gateway_id].append(Delivery(message, to_uids, to_seqs))
        for gateway_id, batch in batches.items():
            await self._bus.publish(gateway_id, batch)

    # -- upkeep --------------------------------------------------------------

    async def _fold_loop(self) -> None:
        """Servers: fold delivered marks into pull floors, a window of users a
        pass, round and round (see ``MessageStore.fold_marks``)."""
        after = 0
        while True:
            await asyncio.sleep(self._fold_seconds)
            try:
                after, folded = await self._store.fold_marks(after, FOLD_WINDOW, FOLD_USERS)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                continue  # the store logs an outage once; try again next pass
            except Exception as exc:
                logger.warning("folding delivered marks failed: %r", exc)
                continue
            if folded:
                self._metrics.marks_folded.inc(folded)

    # -- reading -------------------------------------------------------------

    async def Pull(self, request: message_pb2.PullRequest) -> message_pb2.MessageBatch:
        messages, more = await self._store.pull(request.uid, _page(request.limit))
        return message_pb2.MessageBatch(messages=messages, more=more)

    async def Sync(self, request: message_pb2.SyncRequest) -> message_pb2.SyncReply:
        if request.after_seq < 0:
            raise MpimError(ErrorCode.BAD_SEQ)
        messages, last, more = await self._store.sync(
            request.uid, request.after_seq, _page(request.limit)
        )
        return message_pb2.SyncReply(messages=messages, last_seq=last, more=more)

    async def History(self, request: message_pb2.HistoryRequest) -> message_pb2.MessageBatch:
        limit = min(max(request.limit, 1), HISTORY_MAX_LIMIT)
        which = request.WhichOneof("conversation")
        if which == "group_id":
            members = await self._groups.GetMembers(group_pb2.GroupRef(group_id=request.group_id))
            if request.uid not in members.member_uids:
                raise MpimError(ErrorCode.NOT_MEMBER)
            conv = group_conversation(request.group_id)
        elif which == "peer_uid":
            found = await self._users.GetUsers(user_pb2.GetUsersRequest(uids=[request.peer_uid]))
            if not found.users:
                raise MpimError(ErrorCode.NO_SUCH_USER)
            conv = direct_conversation(request.uid, request.peer_uid)
        else:
            raise MpimError(ErrorCode.BAD_CONVERSATION)
        messages = await self._store.history(request.uid, conv, limit, request.before_id or None)
        return message_pb2.MessageBatch(messages=messages)

    async def MarkDelivered(self, request: message_pb2.MarkDeliveredRequest) -> common_pb2.Empty:
        # Unequal lists are a caller's bug: zip raises, the call fails as internal.
        marks = list(zip(request.uids, request.seqs, strict=True))
        if not marks:
            return _EMPTY
        if not self._store.marks_ride_with_sends:
            await self._store.mark_delivered(marks)
            return _EMPTY
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_marks.extend(marks)
        self._mark_waiters.append(waiter)
        self._flush_soon()
        await waiter
        return _EMPTY
