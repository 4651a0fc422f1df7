"""The cluster file: parsing, start/stop order, and errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mpim.cluster import procs
from mpim.cluster.commands import local_zookeeper_port
from mpim.cluster.config import (
    ClusterConfig,
    ClusterConfigError,
    ProcessSpec,
    load_cluster,
    serve_roles,
    start_waves,
    stop_waves,
)
from mpim.cluster.table import render
from mpim.cluster.tomlwrite import dumps
from mpim.config import load_settings

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "cluster.toml"

MINIMAL = """
[zookeeper]
hosts = "127.0.0.1:2181"
chroot = "/mpimtest"

[cluster]
[[cluster.process]]
role = "user"
instance_id = "user-1"
port = 7101

[[cluster.process]]
role = "gateway"
instance_id = "gw-1"
port = 6000
http_port = 6001
"""


@pytest.fixture(autouse=True)
def _no_mpim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processes' settings are file < environment; keep the developer's env out."""
    for name in list(os.environ):
        if name.startswith("MPIM_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(textwrap.dedent(text))
    return path


def ids(waves: list[list[ProcessSpec]]) -> list[list[str]]:
    return [[spec.instance_id for spec in wave] for wave in waves]


def test_shipped_file_describes_the_local_cluster() -> None:
    cfg = load_cluster(SHIPPED)
    roles = [spec.role for spec in cfg.processes]
    assert roles.count("gateway") == 2
    assert roles.count("message") == 2
    assert {"user", "presence", "group"} <= set(roles)
    gateways = [spec for spec in cfg.processes if spec.is_gateway]
    assert [(g.port, g.http_port) for g in gateways] == [(6000, 6001), (6010, 6011)]
    assert cfg.settings.store.url == "mysql+pymysql://root@127.0.0.1:3306/mpim?charset=utf8mb4"
    assert cfg.settings.redis.url == "redis://127.0.0.1:6379/0"
    assert cfg.settings.zookeeper.hosts == "127.0.0.1:2181"
    assert cfg.settings.zookeeper.chroot == "/mpim"
    assert cfg.logs_dir == SHIPPED.parent / "logs"
    assert cfg.run_dir == SHIPPED.parent / "run"


def test_shipped_roles_are_the_roles_mpim_serve_accepts() -> None:
    cfg = load_cluster(SHIPPED)
    assert set(serve_roles()) == {spec.role for spec in cfg.processes}


def test_services_start_before_gateways_with_user_alone_first() -> None:
    cfg = load_cluster(SHIPPED)
    assert ids(start_waves(cfg.processes)) == [
        ["user-1"],
        ["presence-1", "group-1", "message-1", "message-2"],
        ["gw-1", "gw-2"],
    ]


def test_gateways_stop_first_then_message_then_the_rest() -> None:
    cfg = load_cluster(SHIPPED)
    assert ids(stop_waves(cfg.processes)) == [
        ["gw-1", "gw-2"],
        ["message-1", "message-2"],
        ["user-1", "presence-1", "group-1"],
    ]


def test_settings_file_is_the_cluster_file_without_its_cluster_table(tmp_path: Path) -> None:
    cfg = load_cluster(SHIPPED)
    parsed = tomllib.loads(cfg.settings_toml)
    assert "cluster" not in parsed
    shipped = tomllib.loads(SHIPPED.read_text())
    del shipped["cluster"]
    assert parsed == shipped
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(cfg.settings_toml)
    assert load_settings(settings_file) == cfg.settings


def test_relative_paths_are_relative_to_the_cluster_file(tmp_path: Path) -> None:
    text = MINIMAL.replace("[cluster]", '[cluster]\nlogs_dir = "l"\nrun_dir = "/tmp/abs-run"')
    cfg = load_cluster(write(tmp_path, text))
    assert cfg.logs_dir == tmp_path / "l"
    assert cfg.run_dir == Path("/tmp/abs-run")
    assert cfg.settings_file == Path("/tmp/abs-run/settings.toml")
    gateway = cfg.processes[1]
    assert cfg.log_file(gateway) == tmp_path / "l" / "gw-1.log"
    assert cfg.out_file(gateway) == tmp_path / "l" / "gw-1.out"
    assert cfg.pid_file("gw-1") == Path("/tmp/abs-run/gw-1.pid")


def test_addresses_come_from_the_shared_settings(tmp_path: Path) -> None:
    text = MINIMAL + '\n[rpc]\nhost = "0.0.0.0"\nadvertise_host = "node7"\n'
    cfg = load_cluster(write(tmp_path, text))
    user, gateway = cfg.processes
    assert cfg.address(user) == "node7:7101"
    assert cfg.probe_host(user) == "127.0.0.1"
    assert cfg.address(gateway) == "127.0.0.1:6000"


def test_command_line_passes_instance_ports_and_the_written_settings(tmp_path: Path) -> None:
    cfg = load_cluster(write(tmp_path, MINIMAL))
    user, gateway = cfg.processes
    assert procs.command(cfg, user) == [
        sys.executable, "-m", "mpim", "serve", "user",
        "--config", str(cfg.settings_file), "--instance-id", "user-1", "--port", "7101",
    ]  # fmt: skip
    assert procs.command(cfg, gateway)[-2:] == ["--http-port", "6001"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("port = 7101", 'port = "x"'), "cluster.process[0].port"),
        (("port = 7101", "port = 0"), "cluster.process[0].port"),
        (("port = 7101\n", ""), "cluster.process[0].port"),
        (("port = 7101", "port = 7101\nbogus = 1"), "cluster.process[0].bogus"),
        (('role = "user"', 'role = "usr"'), "cluster.process[0].role"),
        (('instance_id = "gw-1"', 'instance_id = "user-1"'), "cluster.process[1].instance_id"),
        (('instance_id = "gw-1"', 'instance_id = "a/b"'), "cluster.process[1].instance_id"),
        (("port = 6000", "port = 7101"), "cluster.process[1].port"),
        (("http_port = 6001", "http_port = 6000"), "cluster.process[1].http_port"),
        (("port = 7101", "port = 7101\nhttp_port = 7102"), "cluster.process[0].http_port"),
        (("http_port = 6001", "metrics_port = 6001"), "cluster.process[1].metrics_port"),
        (("port = 7101", "port = 7101\nmetrics_port = 6001"), "cluster.process[1].http_port"),
        (("[cluster]", "[cluster]\nstart_timeout_seconds = -1"), "cluster.start_timeout_seconds"),
        (("[cluster]", "[cluster]\nlogdir = 'x'"), "cluster.logdir"),
        (('chroot = "/mpimtest"', 'chroot = "mpimtest"'), "zookeeper.chroot"),
        (("[zookeeper]", "bogus = 1\n[zookeeper]"), "bogus"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    old, new = change
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster(path)
    message = str(caught.value)
    assert str(path) in message
    assert key in message


def test_a_file_without_processes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match=r"no \[cluster\] table"):
        load_cluster(write(tmp_path, "[zookeeper]\nhosts = 'h:1'\n"))
    with pytest.raises(ClusterConfigError, match=r"cluster\.process"):
        load_cluster(write(tmp_path, "[cluster]\nlogs_dir = 'l'\n"))


def test_unreadable_or_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match="cannot read cluster file"):
        load_cluster(tmp_path / "missing.toml")
    with pytest.raises(ClusterConfigError, match="not valid TOML"):
        load_cluster(write(tmp_path, "[cluster\n"))


def test_environment_overrides_reach_the_tool_as_they_reach_the_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPIM_ZOOKEEPER__CHROOT", "/from-env")
    cfg: ClusterConfig = load_cluster(write(tmp_path, MINIMAL))
    assert cfg.settings.zookeeper.chroot == "/from-env"


# -- the TOML writer ----------------------------------------------------------


def test_toml_writer_round_trips_awkward_values() -> None:
    document = {
        "title": 'quote " backslash \\ newline \n tab \t del \x7f nul \x00 é 漢 🙂',
        "n": -3,
        "x": 0.1,
        "big": 1e300,
        "on": True,
        "off": False,
        "list": [1, "two", 3.5, [True]],
        "a": {"b": {"c": 1, "weird key": "v"}, "d": "e"},
        "empty": {},
    }
    assert tomllib.loads(dumps(document)) == document


def test_toml_writer_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError, match=r"a\.b"):
        dumps({"a": {"b": [{"table": "in an array"}]}})


# -- small parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "port"),
    [
        ("127.0.0.1:2181", 2181),
        ("localhost:2999/chroot", 2999),
        ("localhost", 2181),
        ("10.0.0.5:2181", None),
        ("127.0.0.1:2181,127.0.0.1:2182", None),
    ],
)
def test_only_a_single_local_zookeeper_is_started_by_the_tool(hosts: str, port: int | None) -> None:
    assert local_zookeeper_port(hosts) == port


def test_captured_output_rotates_once_too_big(tmp_path: Path) -> None:
    log = tmp_path / "gw-1.out"
    for generation in range(4):
        log.write_text(f"gen{generation}" * 10)
        procs.rotate_log(log, max_bytes=20, backups=2)
    assert not log.exists()
    assert (tmp_path / "gw-1.out.1").read_text().startswith("gen3")
    assert (tmp_path / "gw-1.out.2").read_text().startswith("gen2")
    assert not (tmp_path / "gw-1.out.3").exists()
    log.write_text("small")
    procs.rotate_log(log, max_bytes=20, backups=2)
    assert log.read_text() == "small"


def test_pid_files_and_liveness(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    assert procs.read_pid(path) is None
    path.write_text("garbage\n")
    assert procs.read_pid(path) is None
    procs.write_pid(path, 4242)
    assert procs.read_pid(path) == 4242
    # This test process is alive but is not `mpim serve … x`: a reused pid is not ours.
    assert not procs.is_ours(os.getpid(), "x")


def test_table_aligns_columns() -> None:
    text = render(["A", "BB"], [["long cell", "x"], ["s", "yy"]])
    assert text.splitlines() == ["A          BB", "long cell  x", "s          yy"]


# -- readiness, read back from the captured output ---------------------------------


def _fake_process(tmp_path: Path, script: str) -> procs.Launched:
    """A stand-in for `mpim serve user`, printing like one, after an older run's lines.

    ``script`` may append to its structured log, whose path is ``sys.argv[1]``.
    """
    output = tmp_path / "user-1.out"
    output.write_bytes(b"mpim user user-1 listening on 127.0.0.1:1111\n")  # a previous run
    log = tmp_path / "user-1.log"
    log.write_bytes(b"ts=2026-01-01T00:00:00.000Z level=info logger=x msg=old-run\n")
    with open(output, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(log)], stdout=out, stderr=subprocess.STDOUT
        )
    spec = ProcessSpec(role="user", instance_id="user-1", port=7101)
    return procs.Launched(
        spec, proc, output, output.stat().st_size, log, log_offset=log.stat().st_size
    )


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[str], procs.Launched]]:
    started: list[procs.Launched] = []

    def start(script: str) -> procs.Launched:
        started.append(_fake_process(tmp_path, script))
        return started[-1]

    yield start
    for item in started:
        item.proc.kill()
        item.proc.wait()


def test_ready_once_this_run_prints_its_listening_line(
    fake: Callable[[str], procs.Launched],
) -> None:
    item = fake(
        "import time; print('starting', flush=True); time.sleep(0.3);"
        "print('mpim user user-1 listening on 127.0.0.1:7101', flush=True); time.sleep(30)"
    )
    (outcome,) = procs.wait_ready([item], timeout=20)
    assert outcome.ok
    assert outcome.address == "127.0.0.1:7101"
    assert outcome.pid == item.proc.pid


def test_a_process_that_exits_during_start_up_fails_with_its_log_tails(
    fake: Callable[[str], procs.Launched],
) -> None:
    item = fake(
        "import sys; open(sys.argv[1], 'a').write('ts=1 msg=connecting\\n');"
        "print('mpim user: cannot start: boom'); sys.exit(3)"
    )
    (outcome,) = procs.wait_ready([item], timeout=20)
    assert not outcome.ok
    assert outcome.reason == "exited with status 3 during start-up"
    assert outcome.out_tail == "mpim user: cannot start: boom"
    assert outcome.log_tail == "ts=1 msg=connecting"  # this run's lines only


def test_a_log_rotated_during_start_up_is_read_from_its_beginning(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("fresh line after rotation\n")
    assert procs.log_tail(log, offset=10_000) == "fresh line after rotation"
    assert procs.log_tail(log, offset=log.stat().st_size) == ""


def test_a_process_that_never_listens_times_out(fake: Callable[[str], procs.Launched]) -> None:
    item = fake("import time; print('thinking', flush=True); time.sleep(30)")
    (outcome,) = procs.wait_ready([item], timeout=0.5)
    assert outcome.reason == "not listening after 0.5 s"
    assert "thinking" in outcome.out_tail
    assert "1111" not in outcome.out_tail
    assert outcome.log_tail == ""


def test_two_commands_never_work_on_one_run_dir_at_once(tmp_path: Path) -> None:
    cfg = load_cluster(write(tmp_path, MINIMAL))
    with (
        procs.exclusive(cfg),
        pytest.raises(procs.Busy, match="another mpim cluster"),
        procs.exclusive(cfg),
    ):
        pass
    with procs.exclusive(cfg):  # released at exit
        pass
