"""SeqTracker: in order, ahead, gap filled (reordered), duplicate; what is unseen."""

from __future__ import annotations

from mpim.bench.ranges import RangeSet
from mpim.bench.tracking import AHEAD, DUPLICATE, GAP_FILLED, IN_ORDER, SeqTracker


def test_in_order_stream() -> None:
    tracker = SeqTracker()
    assert [tracker.observe(s) for s in range(3)] == [IN_ORDER] * 3
    assert tracker.contiguous_end() == 2


def test_a_skipped_number_arriving_late_is_a_gap_fill() -> None:
    tracker = SeqTracker()
    assert [tracker.observe(s) for s in (0, 2, 1)] == [IN_ORDER, AHEAD, GAP_FILLED]
    assert not tracker.missing


def test_a_repeat_is_a_duplicate_even_after_a_gap_fill() -> None:
    tracker = SeqTracker()
    for seq in (0, 2, 1):
        tracker.observe(seq)
    assert tracker.observe(1) == DUPLICATE
    assert tracker.observe(0) == DUPLICATE


def test_contiguous_end_stops_at_the_first_gap() -> None:
    tracker = SeqTracker(1)
    for seq in (1, 2, 5, 6):
        tracker.observe(seq)
    assert tracker.contiguous_end() == 2
    assert SeqTracker(1).contiguous_end() == 0


def test_unseen_counts_acknowledged_messages_not_received() -> None:
    tracker = SeqTracker()
    for seq in (0, 1, 3, 4):
        tracker.observe(seq)
    acked = RangeSet([(0, 8)])
    assert tracker.unseen_count(acked) == 4  # 2, 5, 6, 7
    assert tracker.seen(3) and not tracker.seen(2)


def test_unacknowledged_holes_are_not_counted_as_unseen() -> None:
    tracker = SeqTracker()
    for seq in (0, 1, 3):
        tracker.observe(seq)
    acked = RangeSet([(0, 2), (3, 4)])  # 2 got -ERR: never acknowledged
    assert tracker.unseen_count(acked) == 0
