"""What to run: typed, validated descriptions of a benchmark and of one round.

The CLI builds one of these from flags; worker processes receive it pickled.
Every limit is checked here, once, so a typo becomes a clear message before any
socket is opened — and every run is bounded in size and time.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Final

from mpim.bench.addr import Target

MAX_WORKERS: Final = 64
MAX_CONNECTIONS: Final = 200_000
MAX_SECONDS: Final = 3600.0
MAX_MESSAGES: Final = 100_000_000
MAX_RATE: Final = 10_000_000.0
MAX_TEXT: Final = 16_000
RUN_ID_CHARS: Final = string.ascii_lowercase + string.digits
RUN_ID_LEN: Final = 8


class SpecError(ValueError):
    """A benchmark parameter is out of range; the message names it."""


def new_run_id() -> str:
    """Eight random base-36 characters: short enough to fit in a 32-char username."""
    return "".join(secrets.choice(RUN_ID_CHARS) for _ in range(RUN_ID_LEN))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SpecError(message)


@dataclass(frozen=True)
class CommonSpec:
    """Knobs every scenario shares."""

    target: Target
    workers: int = 2
    run_id: str = field(default_factory=new_run_id)
    repeat: int = 1
    warmup: float = 1.0
    duration: float = 5.0
    messages: int | None = None
    drain_timeout: float = 10.0
    ack_timeout: float = 30.0
    max_seconds: float = 900.0
    setup_concurrency: int = 64
    size: int = 0
    #: Send with ``@cid=``, as a client that retries safely does: the server
    #: then checks and indexes (sender, cid) for every message.
    cids: bool = False
    #: Processes to weigh (RSS, CPU summed); empty: whoever listens on the targets.
    server_pids: tuple[int, ...] = ()
    #: More gateways of the same deployment; connection ``i`` goes to
    #: ``target_for(i)``, so with two gateways every c2c pair crosses them.
    more_targets: tuple[Target, ...] = ()
    progress: bool = True
    #: Touched once set-up is done and the first round is about to start, so an
    #: external profiler can attach to the server for the measured part only.
    ready_file: str | None = None

    @property
    def targets(self) -> tuple[Target, ...]:
        return (self.target, *self.more_targets)

    def target_for(self, index: int) -> Target:
        """Round-robin over the gateways: connection ``index`` goes here."""
        targets = self.targets
        return targets[index % len(targets)]

    @property
    def password(self) -> str:
        return f"bench-{self.run_id}"

    def username(self, role: str, index: int) -> str:
        """A name unique to this run (``b<run><role><index>``, at most 32 characters)."""
        return f"b{self.run_id}{role}{index}"

    def validate(self) -> None:
        _check(1 <= self.workers <= MAX_WORKERS, f"--workers must be 1..{MAX_WORKERS}")
        _check(
            len(self.run_id) == RUN_ID_LEN and all(c in RUN_ID_CHARS for c in self.run_id),
            f"--run-id must be {RUN_ID_LEN} characters of a-z0-9",
        )
        _check(1 <= self.repeat <= 100, "--repeat must be 1..100")
        _check(0 <= self.warmup <= MAX_SECONDS, f"--warmup must be 0..{MAX_SECONDS:g} s")
        _check(0 < self.duration <= MAX_SECONDS, f"--duration must be >0 and ≤{MAX_SECONDS:g} s")
        if self.messages is not None:
            _check(0 < self.messages <= MAX_MESSAGES, f"--messages must be 1..{MAX_MESSAGES}")
        _check(0 < self.drain_timeout <= 600, "--drain-timeout must be >0 and ≤600 s")
        _check(0 < self.ack_timeout <= 600, "--ack-timeout must be >0 and ≤600 s")
        _check(0 < self.max_seconds <= 4 * MAX_SECONDS, "--max-seconds must be >0 and ≤4 h")
        _check(1 <= self.setup_concurrency <= 10_000, "--setup-concurrency must be 1..10000")
        _check(0 <= self.size <= MAX_TEXT, f"--size must be 0..{MAX_TEXT}")


def _check_rates(rates: tuple[float, ...]) -> None:
    for rate in rates:
        _check(0 < rate <= MAX_RATE, f"every rate must be >0 and ≤{MAX_RATE:g} msg/s")


@dataclass(frozen=True)
class C2CSpec:
    """One-to-one chat: ``pairs`` senders each talking to their own receiver."""

    common: CommonSpec
    pairs: int = 100
    window: int = 16
    rates: tuple[float, ...] = ()
    idle: int = 0
    idle_users: int = 100
    max_inflight: int = 2000
    name: str = "c2c"

    def validate(self) -> None:
        self.common.validate()
        _check(1 <= self.pairs <= MAX_CONNECTIONS // 2, "--pairs must be 1..100000")
        _check(1 <= self.window <= 100_000, "--window must be 1..100000")
        _check_rates(self.rates)
        _check(0 <= self.idle <= MAX_CONNECTIONS, f"--idle must be 0..{MAX_CONNECTIONS}")
        _check(1 <= self.idle_users <= 100_000, "--idle-users must be 1..100000")
        _check(1 <= self.max_inflight <= 1_000_000, "--max-inflight must be 1..1000000")
        _check(self.common.workers <= self.pairs, "--workers must not exceed --pairs")


@dataclass(frozen=True)
class GroupSpec:
    """One group of ``members`` online members; ``senders`` of them send."""

    common: CommonSpec
    members: int = 100
    senders: int = 4
    window: int = 8
    rates: tuple[float, ...] = ()
    max_inflight: int = 2000
    name: str = "group"

    def validate(self) -> None:
        self.common.validate()
        _check(2 <= self.members <= MAX_CONNECTIONS, f"--members must be 2..{MAX_CONNECTIONS}")
        _check(1 <= self.senders <= self.members, "--senders must be 1..--members")
        _check(1 <= self.window <= 100_000, "--window must be 1..100000")
        _check_rates(self.rates)
        _check(1 <= self.max_inflight <= 1_000_000, "--max-inflight must be 1..1000000")
        _check(self.common.workers <= self.members, "--workers must not exceed --members")


@dataclass(frozen=True)
class IdleSpec:
    """``connections`` held open (logged in via AUTH, or not) to measure memory."""

    common: CommonSpec
    connections: int = 1000
    login: bool = True
    users: int = 100
    hold: float = 3.0
    ping: bool = True
    name: str = "idle"

    def validate(self) -> None:
        self.common.validate()
        _check(
            1 <= self.connections <= MAX_CONNECTIONS, f"--connections must be 1..{MAX_CONNECTIONS}"
        )
        _check(1 <= self.users <= self.connections, "--users must be 1..--connections")
        _check(0 <= self.hold <= MAX_SECONDS, f"--hold must be 0..{MAX_SECONDS:g} s")
        _check(self.common.workers <= self.connections, "--workers must not exceed --connections")


@dataclass(frozen=True)
class LoginSpec:
    """Password LOGIN, then token AUTH, each for ``duration`` seconds, closed loop."""

    common: CommonSpec
    users: int = 32
    concurrency: int = 8
    name: str = "login"

    def validate(self) -> None:
        self.common.validate()
        _check(1 <= self.users <= 100_000, "--users must be 1..100000")
        _check(1 <= self.concurrency <= 10_000, "--concurrency must be 1..10000")
        _check(self.common.workers <= self.concurrency, "--workers must not exceed --concurrency")


ScenarioSpec = C2CSpec | GroupSpec | IdleSpec | LoginSpec


@dataclass(frozen=True)
class RoundSpec:
    """One round as every worker sees it; times are ``time.time_ns()`` values."""

    round_no: int
    label: str
    t0_ns: int
    warmup_ns: int
    duration_ns: int
    #: Total offered rate for the whole run (msg/s); None means closed loop.
    rate: float | None = None
    #: Messages per sender in count mode (by global sender index), else empty.
    quotas: dict[int, int] = field(default_factory=dict)
    #: Every sender's uid, so receivers know whom to expect (group).
    sender_uids: tuple[int, ...] = ()

    @property
    def measure_start_ns(self) -> int:
        return self.t0_ns + self.warmup_ns

    @property
    def stop_ns(self) -> int | None:
        """When senders stop in duration mode; None when bounded by count."""
        return None if self.quotas else self.measure_start_ns + self.duration_ns


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items as ``parts`` near-equal shares (larger shares first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def indices_for(worker: int, workers: int, total: int) -> range:
    """Round-robin assignment: worker ``w`` owns items ``w, w+workers, …``."""
    return range(worker, total, workers)
