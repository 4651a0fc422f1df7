"""Pushes from two message services are written to a user in seq order."""

from __future__ import annotations

import asyncio

from mpim.gateway.push_order import PushOrder
from mpim.proto import common_pb2


class Recorder:
    def __init__(self, committed: dict[int, list[int]] | None = None) -> None:
        self.written: list[tuple[int, int]] = []
        self.committed = committed or {}
        self.fetches: list[tuple[int, int]] = []

    def deliver(self, uid: int, seq: int, line: str) -> bool:
        assert line == f"m{seq}"
        self.written.append((uid, seq))
        return True

    async def fetch_after(self, uid: int, after: int) -> list[common_pb2.Message]:
        self.fetches.append((uid, after))
        return [common_pb2.Message(seq=s) for s in self.committed.get(uid, []) if s > after]


def order(rec: Recorder, gap: float = 0.05) -> PushOrder:
    return PushOrder(rec.deliver, rec.fetch_after, lambda m: f"m{m.seq}", gap_seconds=gap)


async def test_in_order_pushes_pass_straight_through() -> None:
    rec = Recorder()
    po = order(rec)
    for seq in (4, 5, 6):
        assert po.offer(1, seq, f"m{seq}")
    assert rec.written == [(1, 4), (1, 5), (1, 6)]


async def test_a_push_that_overtakes_waits_for_the_one_before_it() -> None:
    rec = Recorder()
    po = order(rec)
    po.offer(1, 4, "m4")
    po.offer(1, 6, "m6")  # seq 5 is still on its way from the other service
    po.offer(2, 9, "m9")  # another user is not held up
    assert rec.written == [(1, 4), (2, 9)]
    po.offer(1, 5, "m5")
    assert rec.written == [(1, 4), (2, 9), (1, 5), (1, 6)]
    await asyncio.sleep(0.1)
    assert rec.fetches == []  # the gap closed before the timer


async def test_a_gap_that_never_fills_is_fetched_with_sync_then_the_rest_follows() -> None:
    rec = Recorder(committed={1: [4, 5, 6, 7]})
    po = order(rec)
    po.offer(1, 4, "m4")
    po.offer(1, 7, "m7")  # the pushes of 5 and 6 were lost
    await asyncio.sleep(0.15)
    assert rec.fetches == [(1, 4)]
    assert rec.written == [(1, 4), (1, 5), (1, 6), (1, 7)]
    po.offer(1, 8, "m8")
    assert rec.written[-1] == (1, 8)


async def test_a_user_who_leaves_is_forgotten_with_what_was_held() -> None:
    rec = Recorder()
    po = order(rec)
    po.offer(1, 4, "m4")
    po.offer(1, 6, "m6")
    po.forget(1)
    await asyncio.sleep(0.1)
    assert rec.fetches == [] and rec.written == [(1, 4)]
    po.offer(1, 10, "m10")  # a new login: its first push is the new baseline
    assert rec.written == [(1, 4), (1, 10)]
    await po.stop()


async def test_a_line_written_already_is_not_written_again() -> None:
    rec = Recorder(committed={1: [4, 5, 6]})
    po = order(rec)
    po.offer(1, 4, "m4")
    po.offer(1, 6, "m6")
    await asyncio.sleep(0.15)  # the gap SYNC wrote 5 and 6
    po.offer(1, 5, "m5")  # the lost push turns up after all, or the catch-up offers it
    po.offer(1, 6, "m6")
    assert rec.written == [(1, 4), (1, 5), (1, 6)]
