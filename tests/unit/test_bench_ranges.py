"""RangeSet: the compact set of acknowledged / received sequence numbers."""

from __future__ import annotations

import pickle
import random

from mpim.bench.ranges import RangeSet


def test_consecutive_adds_stay_one_interval() -> None:
    values = RangeSet()
    for seq in range(1000):
        values.add(seq)
    assert values.intervals() == [(0, 1000)]
    assert len(values) == 1000


def test_gaps_make_intervals_and_filling_them_merges() -> None:
    values = RangeSet()
    for seq in (0, 1, 2, 5, 6, 9):
        values.add(seq)
    assert values.intervals() == [(0, 3), (5, 7), (9, 10)]
    values.add(4)
    values.add(3)
    assert values.intervals() == [(0, 7), (9, 10)]
    assert len(values) == 8


def test_adding_a_member_again_changes_nothing() -> None:
    values = RangeSet([(0, 5)])
    values.add(3)
    assert values.intervals() == [(0, 5)]
    assert len(values) == 5


def test_membership_and_iteration() -> None:
    values = RangeSet([(2, 4), (10, 12)])
    assert [v for v in range(14) if v in values] == [2, 3, 10, 11]
    assert list(values) == [2, 3, 10, 11]
    assert "3" not in values


def test_add_range_merges_overlaps_and_neighbours() -> None:
    values = RangeSet([(0, 2), (5, 7), (10, 12)])
    values.add_range(1, 11)
    assert values.intervals() == [(0, 12)]
    assert len(values) == 12


def test_count_not_in_is_the_size_of_the_difference() -> None:
    rng = random.Random(7)
    for _ in range(50):
        a_values = {rng.randrange(200) for _ in range(120)}
        b_values = {rng.randrange(200) for _ in range(120)}
        a, b = RangeSet(), RangeSet()
        for v in a_values:
            a.add(v)
        for v in b_values:
            b.add(v)
        assert a.count_not_in(b) == len(a_values - b_values)
        assert len(a) == len(a_values)


def test_count_between() -> None:
    values = RangeSet([(0, 10), (20, 30)])
    assert values.count_between(5, 25) == 10
    assert values.count_between(10, 20) == 0
    assert values.count_between(30, 10) == 0


def test_update_is_union() -> None:
    a = RangeSet([(0, 3)])
    a.update(RangeSet([(2, 6), (8, 9)]))
    assert a == RangeSet([(0, 6), (8, 9)])


def test_it_pickles_for_the_trip_between_processes() -> None:
    values = RangeSet([(0, 3), (7, 9)])
    assert pickle.loads(pickle.dumps(values)) == values
