#!/usr/bin/env python
"""The message store's writer alone: CPU and wall time per group commit.

    .venv/bin/python scripts/store_bench.py                  # batches of 10, 100, 1000
    .venv/bin/python scripts/store_bench.py 100x300 --rounds 3

Appends direct messages between 200 sender/receiver pairs, as ``mpim bench
c2c`` does, to a fresh SQLite store (the embedded store, ``synchronous=FULL``)
through ``MessageStore.append``, each commit carrying the delivered marks of
the one before, as the message service sends them. Nothing else runs, so
the figures are what the writer costs without an event loop competing for
the GIL; compared with ``mpim_store_commit_seconds`` under load they show
how much of a commit's time under load is waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mpim.store.database import Database  # noqa: E402
from mpim.store.group_commit import BatchOutcome  # noqa: E402
from mpim.store.messages import DIRECT, MessageStore, NewMessage  # noqa: E402
from mpim.store.users import UserStore  # noqa: E402

PAIRS = 200
TEXT = "run:1:123:1700000000000000000"  # the size of a bench message


class TimedDatabase(Database):
    """Sums the writer thread's CPU and wall time over its commits.

    ``record_batch`` runs on the writer thread after each commit, so the
    thread's CPU clock between two calls is one batch's run and commit.
    """

    cpu_seconds = 0.0
    wall_seconds = 0.0
    _cpu_mark = 0.0

    def record_batch(
        self, outcome: BatchOutcome, size: int, seconds: float, blocked: float | None
    ) -> None:
        super().record_batch(outcome, size, seconds, blocked)
        now = time.thread_time()
        self.cpu_seconds += now - self._cpu_mark
        self._cpu_mark = now
        self.wall_seconds += seconds


async def measure(batch_size: int, commits: int, rounds: int) -> list[tuple[float, float]]:
    """(cpu, wall) seconds per commit for each round after a warm-up round."""
    with tempfile.TemporaryDirectory() as data_dir:
        db = TimedDatabase(f"sqlite:///{data_dir}/store.sqlite3")
        await db.start()
        try:
            users = UserStore(db)
            uids = [await users.create_user(f"user{i}", "-", 0) for i in range(2 * PAIRS)]
            store = MessageStore(db)
            msg_id = 1 << 40
            marks: list[tuple[int, int]] = []
            out = []
            for _ in range(rounds + 1):
                db.cpu_seconds = db.wall_seconds = 0.0
                for commit in range(commits):
                    batch = []
                    for i in range(batch_size):
                        msg_id += 1
                        pair = (commit * batch_size + i) % PAIRS
                        sender, receiver = uids[pair], uids[pair + PAIRS]
                        assert sender is not None and receiver is not None
                        batch.append(NewMessage(msg_id, DIRECT, sender, receiver, 0, TEXT, None))
                    stored = await store.append(batch, marks)
                    marks = [d for s in stored for d in s.deliveries]
                out.append((db.cpu_seconds / commits, db.wall_seconds / commits))
            return out[1:]
        finally:
            await db.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "sizes", nargs="*", default=["10x300", "100x100", "1000x20"], help="BATCHxCOMMITS"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("batch  commits  writer CPU/commit  wall/commit  CPU per message (median of rounds)")
    for size in args.sizes:
        batch_size, commits = (int(part) for part in size.split("x"))
        rounds = asyncio.run(measure(batch_size, commits, args.rounds))
        cpu = statistics.median(c for c, _ in rounds)
        wall = statistics.median(w for _, w in rounds)
        print(
            f"{batch_size:>5}  {commits:>7}  {cpu * 1e3:>14.2f} ms  {wall * 1e3:>8.2f} ms"
            f"  {cpu / batch_size * 1e6:>8.1f} us"
        )


if __name__ == "__main__":
    main()
