"""A commit's blocked time, as both writer lanes report it in /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection

from mpim.store import commit_timing
from mpim.store.commit_timing import CommitTimer
from mpim.store.database import Database
from tests.support.writer_calls import pause, spin

HELD = 0.3


@pytest.fixture(params=[True, False], ids=["writer-process", "writer-thread"])
async def db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.sqlite3'}", writer_process=request.param)
    await database.start()
    yield database
    await database.stop()


def _sums(db: Database) -> tuple[float, float, float]:
    get = db.metrics.registry.get_sample_value
    return (
        get("mpim_store_commit_seconds_sum") or 0.0,
        get("mpim_store_commit_blocked_seconds_sum") or 0.0,
        get("mpim_store_commit_blocked_seconds_count") or 0.0,
    )


async def _one_commit(db: Database, fn: Callable[[Connection, float], None]) -> tuple[float, float]:
    """The commit's wall-clock and blocked seconds, as /metrics counted them."""
    wall0, blocked0, count0 = _sums(db)
    await db.write(fn, HELD, alone=True)
    wall1, blocked1, count1 = _sums(db)
    assert count1 == count0 + 1
    return wall1 - wall0, blocked1 - blocked0


async def test_a_commit_whose_writer_sleeps_counts_as_blocked(db: Database) -> None:
    wall, blocked = await _one_commit(db, pause)
    assert wall >= HELD
    assert HELD * 0.9 <= blocked <= wall


async def test_a_commit_whose_writer_computes_is_not_blocked(db: Database) -> None:
    wall, blocked = await _one_commit(db, spin)
    assert wall >= HELD
    # Running, or waiting for a core on a busy machine, is not blocked.
    assert blocked < HELD / 3


def test_without_scheduler_statistics_only_the_wall_clock_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit_timing, "_SCHEDSTAT", "/nonexistent/schedstat")
    timer = CommitTimer()
    timer.start()
    wall, blocked = timer.stop()
    timer.close()
    assert wall >= 0 and blocked is None
