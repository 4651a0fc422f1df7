"""The server process as Linux sees it: which pid listens on a port, its RSS and CPU.

RSS is what the issue's memory targets are stated in, and it is the one figure
any server exposes without cooperation, so we read ``/proc`` rather than ask
the server. Finding the pid from the port (``/proc/net/tcp*`` gives the
listening socket's inode, ``/proc/*/fd`` tells whose it is) saves the user from
passing ``--server-pid`` when the server runs as the same user.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

logger = logging.getLogger(__name__)

_LISTEN: Final = "0A"
_PROC: Final = Path("/proc")
T = TypeVar("T", int, float)


def listening_inodes(table: str, port: int) -> set[int]:
    """Inodes of sockets in LISTEN state on ``port`` in a /proc/net/tcp(6) table."""
    inodes: set[int] = set()
    for row in table.splitlines()[1:]:
        cols = row.split()
        if len(cols) < 10 or cols[3] != _LISTEN:
            continue
        _, _, hex_port = cols[1].rpartition(":")
        try:
            if int(hex_port, 16) == port:
                inodes.add(int(cols[9]))
        except ValueError:
            continue
    return inodes


def find_listener_pid(port: int, proc: Path = _PROC) -> int | None:
    """The pid holding the listening socket on ``port``, if this user can see it."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            inodes |= listening_inodes((proc / "net" / name).read_text(), port)
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:  # gone, or another user's process
            continue
    return None


def parse_vmrss_kb(status: str) -> int | None:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from /proc/<pid>/stat; the name may hold spaces."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def read_rss_kb(pid: int) -> int | None:
    try:
        return parse_vmrss_kb((_PROC / str(pid) / "status").read_text())
    except OSError:
        return None


def read_cpu_seconds(pid: int) -> float | None:
    try:
        ticks = parse_cpu_ticks((_PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ServerProbe:
    """Reads the summed RSS and CPU time of the server's processes.

    A distributed deployment is several processes; what it costs is their sum.
    With ``include_children``, processes the servers started (the embedded
    server's SQLite writer) count too: they are found again at each read,
    since one may be restarted. A read returns None once any of ``pids`` is
    gone, rather than a partial sum.
    """

    pids: tuple[int, ...]
    include_children: bool = False

    @property
    def pid(self) -> int:
        return self.pids[0]

    def children(self) -> tuple[int, ...]:
        if not self.include_children:
            return ()
        return tuple(c for c in children_of(self.pids) if c not in self.pids)

    def rss_kb(self) -> int | None:
        return _sum(read_rss_kb, self.pids, self.children())

    def cpu_seconds(self) -> float | None:
        return _sum(read_cpu_seconds, self.pids, self.children())

    def read(self) -> tuple[int | None, float | None]:
        """(RSS in KiB, CPU seconds), finding the children once for both:
        finding them reads every process's stat file."""
        children = self.children()
        return _sum(read_rss_kb, self.pids, children), _sum(read_cpu_seconds, self.pids, children)


def _sum(read: Callable[[int], T | None], pids: Sequence[int], children: Sequence[int]) -> T | None:
    """The servers' figures summed (None if one is gone), plus the children still there."""
    total: T | None = None
    for pid in pids:
        value = read(pid)
        if value is None:
            return None
        total = value if total is None else total + value
    for pid in children:
        value = read(pid)
        if value is not None and total is not None:
            total = total + value
    return total


def children_of(pids: Sequence[int], proc: Path = _PROC) -> tuple[int, ...]:
    """Live processes whose parent is one of ``pids``."""
    parents = set(pids)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) in parents:
            found.append(int(entry.name))
    return tuple(sorted(found))


def probe_for(ports: Sequence[int], pids: Sequence[int] = ()) -> ServerProbe | None:
    """A probe for ``pids``, or for whoever listens on ``ports``; None if unknown."""
    if not pids:
        found = []
        for port in ports:
            pid = find_listener_pid(port)
            if pid is None:
                logger.warning("cannot find the process listening on port %d; no RSS figures", port)
                return None
            found.append(pid)
        pids = found
    probe = ServerProbe(tuple(dict.fromkeys(pids)), include_children=True)
    if probe.rss_kb() is None:
        logger.warning("cannot read /proc/<pid>/status of %s; no RSS figures", list(probe.pids))
        return None
    return probe
