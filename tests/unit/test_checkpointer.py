"""A checkpoint that fails (a full or failing disk) must not take the writer down."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mpim.store.checkpointer import Checkpointer


class _FailingConnection:
    """Stands in for the checkpoint connection when the disk fails: hard to cause for real."""

    def execute(self, sql: str) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        pass


def test_a_failed_checkpoint_in_the_writers_share_is_logged_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.sqlite3"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.close()
    checkpointer = Checkpointer(str(path), "FULL", restart_bytes=4096)
    checkpointer.log_frames = checkpointer.copied_frames = 100  # due for the writer's share
    real = checkpointer._conn
    checkpointer._conn = _FailingConnection()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="mpim.store.checkpointer"):
        checkpointer.after_commit()  # does not raise
    assert "checkpoint failed: disk I/O error" in caplog.text
    assert (checkpointer.log_frames, checkpointer.copied_frames) == (100, 100)  # tried again later
    real.close()
