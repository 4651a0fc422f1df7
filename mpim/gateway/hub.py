"""Which sessions on this gateway belong to which user, and push delivery to them.

A pushed message counts as delivered (PULL will not return it again) once it
is written to a connection. Those marks are sent to the message service in
batches rather than one write per message, shortly after the push, and
``flush_marks`` runs before a PULL, so this gateway's own pushes are never
pulled twice. With several gateways, a PULL on another one first has every
gateway store its marks (``pull_barrier.py``). If storing fails the push
has been written anyway: a duplicate in a later PULL is better than a late
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mpim.bus.pushes import PushBatch
from mpim.gateway.push_order import PushOrder
from mpim.gateway.session import Session
from mpim.metrics.families import GatewayMetrics
from mpim.proto import common_pb2, message_pb2
from mpim.proto.interfaces import MessageService
from mpim.protocol.messages import format_message, line_parts

logger = logging.getLogger(__name__)

_MARK_FLUSH_SECONDS = 0.05
_MARK_FLUSH_SIZE = 5000


class SessionHub:
    def __init__(
        self,
        messages: MessageService,
        *,
        reorder_pushes: bool = False,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """``reorder_pushes``: several message services push to this gateway."""
        self._messages = messages
        self._metrics = metrics if metrics is not None else GatewayMetrics()
        # A user's sessions; a user with one (most have one device) maps to
        # the session itself, sparing a list per connection.
        self._by_uid: dict[int, Session | list[Session]] = {}
        self._marks: list[tuple[int, int]] = []
        self._flush_task: asyncio.Task[None] | None = None
        # One MarkDelivered at a time: a flush returns only once every mark
        # taken before it, by it or by a flush already running, is stored.
        self._flush_lock = asyncio.Lock()
        self.pushed = 0
        # Several message services push independently: put each user's pushes
        # back in seq order (see push_order.py). One embedded service needs not.
        self.order: PushOrder | None = (
            PushOrder(self._deliver, self._sync_after, _line_of) if reorder_pushes else None
        )

    def add(self, uid: int, session: Session) -> None:
        by_uid = self._by_uid
        current = by_uid.get(uid)
        if current is None:
            by_uid[uid] = session
        elif isinstance(current, list):
            current.append(session)
        else:
            by_uid[uid] = [current, session]

    def remove(self, uid: int, session: Session) -> None:
        by_uid = self._by_uid
        current = by_uid.get(uid)
        if current is session:
            del by_uid[uid]
        elif isinstance(current, list):
            with contextlib.suppress(ValueError):
                current.remove(session)
            if len(current) == 1:
                by_uid[uid] = current[0]
            elif not current:
                del by_uid[uid]
        if uid not in by_uid and self.order is not None:
            self.order.forget(uid)

    def online_uids(self) -> list[int]:
        return list(self._by_uid)

    def deliver_ordered(self, uid: int, seq: int, line: str) -> bool:
        """One line outside a bus batch (the catch-up), in the same per-user order."""
        pushed_before = self.pushed
        offer = self.order.offer if self.order is not None else self._deliver
        taken = offer(uid, seq, line)
        self._count_delivered(pushed_before)
        return taken

    def on_push(self, batch: PushBatch) -> None:
        """Bus handler: write each message to every local session of its recipients."""
        self._write(batch)
        if self._marks:
            self._schedule_flush()

    def _write(self, batch: PushBatch) -> None:
        now_ms = time.time() * 1000
        pushed_before = self.pushed
        latency = self._metrics.push_latency
        by_uid = self._by_uid
        marks = self._marks
        order = self.order
        for delivery in batch:
            m = delivery.message
            head, tail = line_parts(m.msg_id, m.kind, m.from_uid, m.target, m.ts_ms, m.text)
            taken = False
            for uid, seq in zip(delivery.uids, delivery.seqs, strict=True):
                sessions = by_uid.get(uid)
                if sessions is None:
                    continue
                line = f"{head}{seq}{tail}"
                if order is not None:
                    written = order.offer(uid, seq, line)
                elif type(sessions) is Session:
                    # A user on one device: _deliver inlined, once per push.
                    written = sessions.push(seq, line)
                    self.pushed += written
                else:
                    written = self._deliver(uid, seq, line)
                if written:
                    taken = True
                    marks.append((uid, seq))
            if taken:
                # One observation per message (not per recipient): a 1,000-member
                # fan-out would otherwise cost 1,000 histogram updates.
                latency.observe(max(0.0, now_ms - m.ts_ms) / 1000)
        self._count_delivered(pushed_before)

    def _deliver(self, uid: int, seq: int, line: str) -> bool:
        """Write one pushed line to every session of ``uid`` here."""
        sessions = self._by_uid.get(uid)
        if sessions is None:
            return False
        if isinstance(sessions, list):
            delivered = False
            for session in list(sessions):
                delivered = session.push(seq, line) or delivered
        else:
            delivered = sessions.push(seq, line)
        if delivered:
            self.pushed += 1
        return delivered

    def _count_delivered(self, pushed_before: int) -> None:
        if self.pushed > pushed_before:
            self._metrics.delivered.inc(self.pushed - pushed_before)

    async def _sync_after(self, uid: int, after_seq: int) -> list[common_pb2.Message]:
        """A push gap: the messages after ``after_seq``, recorded as delivered."""
        reply = await self._messages.Sync(message_pb2.SyncRequest(uid=uid, after_seq=after_seq))
        if reply.messages:
            self._marks.extend((uid, m.seq) for m in reply.messages)
            self._schedule_flush()
        return list(reply.messages)

    def _schedule_flush(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        if len(self._marks) < _MARK_FLUSH_SIZE:
            await asyncio.sleep(_MARK_FLUSH_SECONDS)
        while self._marks:
            await self.flush_marks()

    async def flush_marks(self) -> None:
        """Store every mark made before this call.

        One batch per call, under a lock: the marks are either still queued
        (this call takes them) or in the batch of a flush that ends before
        this one starts. Taking what arrives meanwhile too would let a busy
        gateway's flush run on and keep a PULL waiting behind it.
        """
        async with self._flush_lock:
            if not self._marks:
                return
            marks, self._marks = self._marks, []
            request = message_pb2.MarkDeliveredRequest()
            request.uids.extend([u for u, _ in marks])
            request.seqs.extend([s for _, s in marks])
            try:
                await self._messages.MarkDelivered(request)
            except Exception as exc:
                # Only costs a duplicate in a later PULL; never a lost message.
                logger.warning("could not record %d deliveries: %r", len(marks), exc)

    async def stop(self) -> None:
        if self.order is not None:
            await self.order.stop()
        # First: a flush in progress ends (the lock), and what is queued is
        # stored; cancelling it mid-call could lose the marks it carries.
        await self.flush_marks()
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        await self.flush_marks()


def _line_of(message: common_pb2.Message) -> str:
    return format_message(message, message.seq)
