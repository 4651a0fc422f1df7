"""A token bucket: the per-connection command rate limit."""

from __future__ import annotations

import math
import time

# The clock starts at import so that ``seconds * rate`` stays small and precise.
_EPOCH = time.monotonic()


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; rate 0 means unlimited.

    Every connection has one, so its state is a single float, counted in
    tokens: ``spent``, against a clock that earns ``rate`` tokens a second.
    The bucket holds ``seconds * rate - spent`` tokens, at most
    ``burst``; a new bucket is full (``spent`` is -inf). Taking adds a whole
    token to ``spent``, which is exact at these magnitudes, so ``burst``
    commands at once are all allowed.
    """

    __slots__ = ("_burst", "_rate", "_spent")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._spent = -math.inf

    def take(self) -> bool:
        rate = self._rate
        if rate <= 0:
            return True
        earned = (time.monotonic() - _EPOCH) * rate
        # Tokens beyond the burst were never kept.
        spent = max(self._spent, earned - self._burst)
        if earned - spent >= 1.0:
            self._spent = spent + 1.0
            return True
        return False
