"""The user service's memory of its own revocations: kept long enough, bounded."""

from __future__ import annotations

import time

from mpim.services.user import RecentRevocations


def test_a_revocation_is_remembered_for_the_keep_time_then_forgotten() -> None:
    recent = RecentRevocations(keep_seconds=0.05)
    recent.add("a")
    assert "a" in recent
    assert "b" not in recent
    time.sleep(0.06)
    assert "a" not in recent
    recent.add("b")  # adding drops what has expired
    assert len(recent) == 1


def test_memory_is_bounded_by_dropping_the_oldest() -> None:
    recent = RecentRevocations(keep_seconds=60, max_entries=3)
    for token_hash in "abcd":
        recent.add(token_hash)
    assert len(recent) == 3
    assert "a" not in recent
    assert all(h in recent for h in "bcd")


def test_revoking_again_extends_the_memory() -> None:
    recent = RecentRevocations(keep_seconds=60, max_entries=2)
    recent.add("a")
    recent.add("b")
    recent.add("a")  # now the newest
    recent.add("c")
    assert "a" in recent
    assert "b" not in recent
