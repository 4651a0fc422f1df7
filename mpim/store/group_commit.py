"""One group commit: queued write calls in one transaction, one failure isolated.

Shared by the writer thread (every backend) and the SQLite writer process.
A call is a function of a Connection and its arguments, ``fn(conn, *args)``;
kept as the pair, not a closure, so it can cross to the writer process.
If any call in a batch raises, the batch is rolled back and each call
re-runs alone, so one failing call never fails or delays its neighbours'
outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Connection

from mpim.errors import MpimError
from mpim.store import held_writes
from mpim.store.failures import StoreUnavailable, is_conflict, is_unreachable

logger = logging.getLogger(__name__)

_CONFLICT_RETRIES: Final = 3

Outcome = tuple[Any, BaseException | None]


@dataclass(slots=True)
class WriteCall:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    alone: bool = False


@dataclass(slots=True)
class BatchOutcome:
    outcomes: list[Outcome]  # in the calls' order
    errors: int = 0  # faults (not refusals), for the write-errors metric

    @property
    def unreachable(self) -> StoreUnavailable | None:
        for _, exc in self.outcomes:
            if isinstance(exc, StoreUnavailable):
                return exc
        return None


# What opens a transaction and commits it when its block ends: Engine.begin,
# or a writer lane's LaneConnection.begin.
Begin = Callable[[], AbstractContextManager[Connection]]


def commit_calls(begin: Begin, calls: Sequence[WriteCall]) -> BatchOutcome:
    """Run ``calls`` in one transaction and commit; each call's result or error."""
    result = BatchOutcome([])
    _commit(begin, calls, result, conflicts=0)
    return result


def _commit(begin: Begin, calls: Sequence[WriteCall], out: BatchOutcome, conflicts: int) -> None:
    try:
        with begin() as conn, held_writes.together(conn):
            results = [call.fn(conn, *call.args) for call in calls]
    except Exception as exc:
        if is_unreachable(exc):
            # Every call would fail the same way, each retry costing a
            # connect: fail them all now. A commit whose answer was lost
            # may have happened; clients retry sends with their cid.
            out.errors += len(calls)
            out.outcomes.extend((None, StoreUnavailable(exc)) for _ in calls)
            return
        if len(calls) == 1:
            if is_conflict(exc) and conflicts < _CONFLICT_RETRIES:
                # Another process won a race (unique key, deadlock, lock
                # wait): the call re-reads and sees the winner's commit.
                time.sleep(0.005 * (conflicts + 1))
                _commit(begin, calls, out, conflicts + 1)
                return
            if not isinstance(exc, MpimError):  # a refusal is an answer, not a fault
                out.errors += 1
            out.outcomes.append((None, exc))
            return
        logger.debug("batch of %d failed (%r); retrying calls one by one", len(calls), exc)
        for call in calls:
            _commit(begin, [call], out, 0)
        return
    out.outcomes.extend((r, None) for r in results)


class _Queued(Protocol):
    @property
    def alone(self) -> bool: ...


Q = TypeVar("Q", bound=_Queued)


def next_batch(first: Q, more: Callable[[], Q | None], max_batch: int) -> tuple[list[Q], Q | None]:
    """``first`` and what ``more`` yields, up to ``max_batch``; an ``alone``
    call ends the batch and is returned to start the next one."""
    batch = [first]
    while not first.alone and len(batch) < max_batch:
        item = more()
        if item is None:
            break
        if item.alone:
            return batch, item
        batch.append(item)
    return batch, None


def settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    """Resolve each future with its outcome; a cancelled caller's write stands."""
    for future, (result, exc) in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        try:
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        except (TypeError, ValueError) as problem:  # e.g. StopIteration is refused
            future.set_exception(RuntimeError(f"{exc!r} could not be raised: {problem}"))
