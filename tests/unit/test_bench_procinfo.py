"""Finding the server process and reading its RSS and CPU from /proc."""

from __future__ import annotations

import os
import socket
import subprocess

from mpim.bench.coordinator import TICK, Coordinator
from mpim.bench.procinfo import (
    ServerProbe,
    children_of,
    find_listener_pid,
    listening_inodes,
    parse_cpu_ticks,
    parse_vmrss_kb,
    probe_for,
)
from mpim.bench.progress import ProgressView
from mpim.bench.scenarios.base import Samples

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1770 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1770 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5555 1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1
"""


def test_only_listening_sockets_on_the_port_count() -> None:
    assert listening_inodes(TCP_TABLE, 6000) == {4242}
    assert listening_inodes(TCP_TABLE, 22) == {777}
    assert listening_inodes(TCP_TABLE, 1) == set()


def test_vmrss_is_read_in_kib() -> None:
    assert parse_vmrss_kb("Name:\tpython\nVmRSS:\t  123456 kB\nThreads: 3\n") == 123456
    assert parse_vmrss_kb("Name:\tkthread\n") is None


def test_cpu_ticks_survive_a_process_name_with_spaces_and_parens() -> None:
    fields = ["S"] + ["0"] * 10 + ["150", "50"] + ["0"] * 30
    stat = "1234 (my (odd) name) " + " ".join(fields)
    assert parse_cpu_ticks(stat) == 200


def test_the_listener_of_a_real_socket_is_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert find_listener_pid(port) == os.getpid()
        probe = probe_for([port])
        assert probe is not None and probe.pids == (os.getpid(),)


def test_several_pids_are_summed() -> None:
    one = ServerProbe((os.getpid(),))
    two = ServerProbe((os.getpid(), os.getppid()))
    rss_one, rss_two = one.rss_kb(), two.rss_kb()
    assert rss_one is not None and rss_two is not None and rss_two > rss_one


def test_a_probe_reads_this_process() -> None:
    probe = ServerProbe((os.getpid(),))
    rss = probe.rss_kb()
    assert rss is not None and rss > 1000
    cpu = probe.cpu_seconds()
    assert cpu is not None and cpu >= 0


def test_a_servers_children_are_weighed_with_it_while_they_live() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in children_of([os.getpid()])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            probe = probe_for([sock.getsockname()[1]])
        assert probe is not None and child.pid in probe.children()
        alone = ServerProbe(probe.pids)
        rss, rss_alone = probe.rss_kb(), alone.rss_kb()
        assert rss is not None and rss_alone is not None and rss > rss_alone
        rss_read, cpu_read = probe.read()  # one scan for the children, both figures
        assert rss_read is not None and rss_read > rss_alone and cpu_read is not None
    finally:
        child.kill()
        child.wait()
    assert child.pid not in children_of([os.getpid()])
    assert child.pid not in probe.children() and probe.rss_kb() is not None  # gone: not counted


def test_a_gone_process_reads_as_none() -> None:
    probe = ServerProbe((os.getpid(), 2**22 + 12345))
    assert probe.rss_kb() is None and probe.cpu_seconds() is None
    assert probe.read() == (None, None)
    assert probe_for([1], [2**22 + 12345]) is None


class _CountingProbe:
    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> tuple[int, float]:
        self.reads += 1
        return 1000, 1.0


def test_progress_ticks_sample_the_server_at_most_once_a_tick() -> None:
    # Workers' progress messages each end in a tick; reading /proc for every
    # one of them cost the load tool 7 % of a core at 10,000 msg/s.
    coordinator = object.__new__(Coordinator)
    probe = _CountingProbe()
    coordinator.probe = probe  # type: ignore[assignment]
    coordinator.view = ProgressView(enabled=False)
    coordinator.samples = Samples()
    coordinator._sampled_at = -TICK
    coordinator._progress = {}
    for _ in range(50):
        coordinator._tick()
    assert probe.reads == 1
    coordinator.sample()  # a round's start and end always sample
    assert probe.reads == 2 and len(coordinator.samples.cpu_s) == 2
