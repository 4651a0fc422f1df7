"""The client's record of shown seqs: dedupe without unbounded memory."""

from __future__ import annotations

import pytest

from mpim.client.seen import SeenSeqs


def test_a_seq_is_new_once() -> None:
    seen = SeenSeqs()
    assert seen.add(3)
    assert not seen.add(3)
    assert 3 in seen


def test_last_seq_is_the_highest_seen_not_the_latest_added() -> None:
    seen = SeenSeqs()
    seen.add(6)
    seen.add(5)
    assert seen.last_seq == 6


def test_an_older_seq_not_seen_yet_is_new() -> None:
    # PULL may hand over an undelivered old message after newer live pushes.
    seen = SeenSeqs()
    seen.add(6)
    assert seen.add(5)


def test_seq_zero_is_my_own_message_and_always_shown() -> None:
    seen = SeenSeqs()
    assert seen.add(0)
    assert seen.add(0)
    assert seen.last_seq == 0


def test_memory_is_bounded_and_old_seqs_count_as_seen() -> None:
    seen = SeenSeqs(capacity=10)
    for seq in range(1, 101):
        assert seen.add(seq)
    assert len(seen) <= 10
    assert 1 in seen and not seen.add(1)
    assert seen.last_seq == 100
    assert seen.add(101)


def test_reset_forgets_everything() -> None:
    seen = SeenSeqs(capacity=4)
    for seq in range(1, 10):
        seen.add(seq)
    seen.reset()
    assert seen.last_seq == 0 and 1 not in seen and seen.add(1)


def test_capacity_must_allow_compaction() -> None:
    with pytest.raises(ValueError):
        SeenSeqs(capacity=1)
