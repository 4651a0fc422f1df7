"""The send/receive engine of the c2c and group scenarios.

Senders stamp each text with ``run:round:seq:send_ns`` and count ``+OK`` acks;
receivers parse pushed ``MSG``/``GMSG`` lines, measure end-to-end latency from
the stamp and follow each sender's sequence to count duplicates and
reordering. At the end of a round every worker learns which messages were
acknowledged (by anyone), waits for them to arrive, then asks the server with
``SYNC`` for any that did not: those are *late* (stored, push missed); the
rest are *lost*.

Everything on the per-message path is a plain callback on a ``__slots__``
object; no coroutine or future is created per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Sequence
from typing import Final

from mpim.bench.client import BenchConnection, reply_fields
from mpim.bench.histogram import Histogram
from mpim.bench.payload import make_padding, parse_message_line, parse_text
from mpim.bench.ranges import RangeSet
from mpim.bench.results import Partial
from mpim.bench.scenarios.base import Progress, SetupInfo, cpu_seconds, sleep_until, wait_until
from mpim.bench.spec import CommonSpec, RoundSpec
from mpim.bench.tracking import DUPLICATE, GAP_FILLED, SeqTracker

logger = logging.getLogger(__name__)

FAR_FUTURE_NS: Final = 1 << 62
PACE_INTERVAL: Final = 0.001
MAX_SYNC_PAGES: Final = 10_000


class RoundStats:
    """One worker's counters and raw latencies for the current round."""

    __slots__ = (
        "ack_lat",
        "acked",
        "delivered",
        "duplicated",
        "e2e_lat",
        "last_ack",
        "last_delivery",
        "late",
        "measure_end",
        "measure_start",
        "partial",
        "reordered",
        "round_no",
        "sent",
        "throttled",
        "window_acked",
        "window_delivered",
    )

    def __init__(self, spec: RoundSpec) -> None:
        self.round_no = spec.round_no
        self.measure_start = spec.measure_start_ns
        stop = spec.stop_ns
        self.measure_end = FAR_FUTURE_NS if stop is None else stop
        self.partial = Partial()  # errors and their samples go straight here
        self.ack_lat: array[int] = array("q")
        self.e2e_lat: array[int] = array("q")
        self.sent = self.acked = self.delivered = self.late = 0
        self.duplicated = self.reordered = self.throttled = 0
        self.window_acked = self.window_delivered = 0
        self.last_ack = self.last_delivery = 0

    def note_error(self, text: str) -> None:
        self.partial.note_error(text)


class Sender:
    """One connection that sends stamped messages to one target (a user or a group)."""

    __slots__ = (
        "acked",
        "cid_prefix",
        "closed_loop",
        "conn",
        "index",
        "inflight",
        "next_seq",
        "padding",
        "prefix",
        "quota",
        "round_no",
        "run_id",
        "running",
        "stats",
        "uid",
        "window",
    )

    def __init__(
        self,
        conn: BenchConnection,
        uid: int,
        index: int,
        command: bytes,
        run_id: str,
        size: int,
        *,
        cids: bool = False,
    ) -> None:
        self.conn = conn
        self.uid = uid
        self.index = index
        self.prefix = command  # e.g. b"SEND 12 " or b"SENDGROUP 3 "
        self.run_id = run_id.encode()
        self.padding = make_padding(size, self.run_id)
        # cid "r<run id>-<round>-<seq>": unique per sender across rounds and runs
        self.cid_prefix = b"@cid=r%s-" % self.run_id if cids else None
        self.stats: RoundStats | None = None
        self.round_no = 0
        self.next_seq = 0
        self.inflight = 0
        self.acked = RangeSet()
        self.running = False
        self.closed_loop = True
        self.quota: int | None = None
        self.window = 1

    def begin(self, stats: RoundStats, quota: int | None, window: int, closed_loop: bool) -> None:
        self.stats = stats
        self.round_no = stats.round_no
        self.next_seq = 0
        self.inflight = 0
        self.acked = RangeSet()
        self.quota = quota
        self.window = window
        self.closed_loop = closed_loop
        self.running = quota is None or quota > 0

    def start(self) -> None:
        """Closed loop: fill the window; each ack then sends the next message."""
        for _ in range(self.window):
            if not self.running:
                break
            self.send_one()

    def send_one(self) -> None:
        seq = self.next_seq
        now = time.time_ns()
        data = b"%s%s:%d:%d:%d%s\n" % (
            self.prefix,
            self.run_id,
            self.round_no,
            seq,
            now,
            self.padding,
        )
        if self.cid_prefix is not None:
            data = b"%s%d-%d %s" % (self.cid_prefix, self.round_no, seq, data)
        if not self.conn.send(data, self._on_reply, seq, now):
            self.running = False
            return
        self.next_seq = seq + 1
        self.inflight += 1
        stats = self.stats
        assert stats is not None
        stats.sent += 1
        if self.quota is not None and self.next_seq >= self.quota:
            self.running = False

    def _on_reply(self, line: bytes | None, now: int, seq: int, sent_ns: int) -> None:
        self.inflight -= 1
        stats = self.stats
        assert stats is not None
        if line is None:  # connection lost with this send unanswered
            self.running = False
            return
        if line[:3] == b"+OK":
            self.acked.add(seq)
            stats.acked += 1
            if stats.measure_start <= sent_ns < stats.measure_end:
                stats.ack_lat.append((now - sent_ns) // 1000)
            if stats.measure_start <= now < stats.measure_end:
                stats.window_acked += 1
            if now > stats.last_ack:
                stats.last_ack = now
        else:
            stats.note_error(line.decode(errors="replace")[:200])
        if self.running and self.closed_loop:
            self.send_one()

    @property
    def busy(self) -> bool:
        return self.inflight > 0 and not self.conn.closed


class Receiver:
    """One logged-in connection that counts the messages pushed to it."""

    __slots__ = ("conn", "inbox", "pairs", "round_no", "run_id", "stats", "uid")

    def __init__(self, conn: BenchConnection, uid: int, run_id: str) -> None:
        self.conn = conn
        self.uid = uid
        self.run_id = run_id.encode()
        self.inbox = SeqTracker(1)  # the server's seq= for this user, across rounds
        self.pairs: dict[int, SeqTracker] = {}
        self.stats: RoundStats | None = None
        self.round_no = 0
        conn.on_push = self.on_line

    def begin(self, stats: RoundStats, senders: Sequence[int]) -> None:
        self.stats = stats
        self.round_no = stats.round_no
        self.pairs = {uid: SeqTracker(0) for uid in senders if uid != self.uid}

    def on_line(self, line: bytes, now: int) -> None:
        self._take(line, now, late=False)

    def _take(self, line: bytes, now: int, late: bool) -> None:
        stats = self.stats
        if stats is None:
            return
        parsed = parse_message_line(line)
        if parsed is None:
            stats.note_error("unexpected line: " + line.decode(errors="replace")[:120])
            return
        sender, inbox_seq, text = parsed
        if inbox_seq >= 0 and self.inbox.observe(inbox_seq) == DUPLICATE and late:
            return  # SYNC repeats what was already pushed
        stamp = parse_text(text)
        if stamp is None or stamp[0] != self.run_id:
            stats.note_error("message not sent by this run: " + text.decode(errors="replace")[:80])
            return
        _, round_no, seq, ts = stamp
        if round_no != self.round_no:
            stats.note_error(f"message of round {round_no} arrived in round {self.round_no}")
            return
        pair = self.pairs.get(sender)
        if pair is None:
            stats.note_error(f"message from unexpected sender uid {sender}")
            return
        outcome = pair.observe(seq)
        if outcome == DUPLICATE:
            if not late:
                stats.duplicated += 1
            return
        if late:
            stats.late += 1
            return
        if outcome == GAP_FILLED:
            stats.reordered += 1
        stats.delivered += 1
        if stats.measure_start <= ts < stats.measure_end:
            stats.e2e_lat.append((now - ts) // 1000)
        if stats.measure_start <= now < stats.measure_end:
            stats.window_delivered += 1
        if now > stats.last_delivery:
            stats.last_delivery = now

    def unseen(self, expect: dict[int, RangeSet]) -> int:
        """Acknowledged messages meant for this receiver that it has not seen."""
        return sum(
            tracker.unseen_count(expect[uid])
            for uid, tracker in self.pairs.items()
            if uid in expect
        )

    def expected(self, expect: dict[int, RangeSet]) -> int:
        return sum(len(expect[uid]) for uid in self.pairs if uid in expect)

    async def recover(self, timeout: float) -> None:
        """Fetch what the pushes missed with SYNC (PULL if the server has no SYNC)."""
        after = max(self.inbox.contiguous_end(), 0)
        for _ in range(MAX_SYNC_PAGES):
            lines, status = await self.conn.request_lines(f"SYNC {after}", timeout)
            if status.startswith(b"-ERR"):
                lines, status = await self.conn.request_lines("PULL", timeout)
                self._take_late(lines)
                return
            self._take_late(lines)
            fields = reply_fields(status)
            if fields.get("more") != "1" or "seq" not in fields:
                return
            after = int(fields["seq"])

    def _take_late(self, lines: list[bytes]) -> None:
        now = time.time_ns()
        for line in lines:
            self._take(line, now, late=True)


class MessagingWorker:
    """The worker half of c2c and group; subclasses create the users in ``setup``."""

    def __init__(self, common: CommonSpec, window: int, max_inflight: int) -> None:
        self.common = common
        self.window = window
        self.max_inflight = max_inflight
        self.senders: list[Sender] = []
        self.receivers: list[Receiver] = []
        self.connections: list[BenchConnection] = []
        self.setup_done = 0
        self.dropped: list[str] = []
        self._closing = False
        self._stats: RoundStats | None = None
        self._spec: RoundSpec | None = None
        self._cpu_start = 0.0

    # -- hooks -----------------------------------------------------------------

    async def setup(self) -> SetupInfo:
        raise NotImplementedError

    def senders_for(self, receiver: Receiver, spec: RoundSpec) -> Sequence[int]:
        """The uids whose messages ``receiver`` should get this round."""
        raise NotImplementedError

    def extra_connections(self) -> int:
        return 0

    # -- shared machinery --------------------------------------------------------

    def track(self, conn: BenchConnection) -> BenchConnection:
        conn.on_lost = self._lost
        self.connections.append(conn)
        return conn

    def _lost(self, reason: str) -> None:
        """A connection dropped: reported as an error with the current (or next) round."""
        if not self._closing:
            self.dropped.append(reason)

    def progress(self) -> Progress:
        stats = self._stats
        if stats is None:
            return Progress(setup_done=self.setup_done, connected=len(self.connections))
        return Progress(
            setup_done=self.setup_done,
            sent=stats.sent,
            acked=stats.acked,
            delivered=stats.delivered,
            errors=stats.partial.counts["errors"] + len(self.dropped),
            connected=len(self.connections),
        )

    async def run_round(self, spec: RoundSpec) -> dict[int, RangeSet]:
        stats = RoundStats(spec)
        self._stats, self._spec = stats, spec
        self._cpu_start = cpu_seconds()
        for receiver in self.receivers:
            receiver.begin(stats, self.senders_for(receiver, spec))
        closed = spec.rate is None
        for sender in self.senders:
            quota = spec.quotas.get(sender.index) if spec.quotas else None
            sender.begin(stats, quota, self.window, closed)
        await sleep_until(spec.t0_ns)
        if closed:
            for sender in self.senders:
                sender.start()
            await self._until_stopped(spec)
        else:
            assert spec.rate is not None
            share = spec.rate * len(self.senders) / max(len(spec.sender_uids), 1)
            await self._pace(spec, share, stats)
        for sender in self.senders:
            sender.running = False
        await self._await_acks(stats)
        return {sender.uid: sender.acked for sender in self.senders}

    async def _until_stopped(self, spec: RoundSpec) -> None:
        stop = spec.stop_ns
        if stop is not None:
            await sleep_until(stop)
            return
        await wait_until(lambda: not any(s.running for s in self.senders), self.common.max_seconds)

    async def _pace(self, spec: RoundSpec, rate: float, stats: RoundStats) -> None:
        """Open loop: issue ``rate`` msg/s round-robin, whatever the server does.

        A sender with ``max_inflight`` unacknowledged messages skips its turn
        (counted as ``throttled``), which bounds the tool's memory when the
        server falls behind.
        """
        senders = list(self.senders)
        if not senders or rate <= 0:
            return
        stop = spec.stop_ns if spec.stop_ns is not None else FAR_FUTURE_NS
        start = spec.t0_ns
        issued = 0
        turn = 0
        count = len(senders)
        cap = self.max_inflight
        while True:
            now = time.time_ns()
            if now >= stop or not any(s.running for s in senders):
                return
            due = int((now - start) * rate / 1e9) - issued
            for _ in range(due):
                sender = senders[turn]
                turn = turn + 1 if turn + 1 < count else 0
                if not sender.running:
                    continue
                if sender.inflight >= cap:
                    stats.throttled += 1
                else:
                    sender.send_one()
            issued += due
            await asyncio.sleep(PACE_INTERVAL)

    async def _await_acks(self, stats: RoundStats) -> None:
        await wait_until(lambda: not any(s.busy for s in self.senders), self.common.ack_timeout)
        for sender in self.senders:
            if sender.busy:
                stats.note_error(
                    f"{sender.inflight} sends unanswered after {self.common.ack_timeout:g}s"
                )
                sender.conn.abort()  # its FIFO can no longer be trusted

    async def finish_round(self, expect: dict[int, RangeSet]) -> Partial:
        stats = self._stats
        assert stats is not None
        pending = list(self.receivers)

        def delivered() -> bool:
            nonlocal pending
            pending = [r for r in pending if r.unseen(expect)]
            return not pending

        await wait_until(delivered, self.common.drain_timeout)
        for receiver in pending:
            if receiver.conn.closed:
                continue
            try:
                await receiver.recover(self.common.drain_timeout)
            except (ConnectionError, TimeoutError) as exc:
                stats.note_error(f"SYNC failed: {exc!r}")
        return self._partial(stats, expect)

    def _partial(self, stats: RoundStats, expect: dict[int, RangeSet]) -> Partial:
        part = stats.partial
        for reason in self.dropped:
            part.counts["disconnects"] += 1
            part.note_error(reason)
        self.dropped.clear()
        part.counts.update(
            sent=stats.sent,
            acked=stats.acked,
            delivered=stats.delivered,
            late=stats.late,
            duplicated=stats.duplicated,
            reordered=stats.reordered,
            throttled=stats.throttled,
            window_acked=stats.window_acked,
            window_delivered=stats.window_delivered,
            expected=sum(r.expected(expect) for r in self.receivers),
            lost=sum(r.unseen(expect) for r in self.receivers),
        )
        part.hists["ack"] = Histogram.of(stats.ack_lat)
        part.hists["e2e"] = Histogram.of(stats.e2e_lat)
        part.mark("last_ack_ns", stats.last_ack)
        part.mark("last_delivery_ns", stats.last_delivery)
        part.cpu_seconds = cpu_seconds() - self._cpu_start
        return part

    async def close(self) -> None:
        self._closing = True
        for conn in self.connections:
            conn.close()
        await asyncio.sleep(0)
