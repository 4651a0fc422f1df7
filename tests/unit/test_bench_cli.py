"""``mpim bench`` flags: loopback only, bounded values, clear messages."""

from __future__ import annotations

import argparse

import pytest

from mpim.bench.addr import AddressError, Target, is_loopback, parse_target
from mpim.bench.cli import build_spec, run_bench
from mpim.bench.spec import (
    C2CSpec,
    CommonSpec,
    GroupSpec,
    IdleSpec,
    LoginSpec,
    SpecError,
    indices_for,
    split_evenly,
)
from mpim.cli import build_parser


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:6000", Target("127.0.0.1", 6000)),
        ("localhost:1", Target("127.0.0.1", 1)),
        ("127.9.8.7:65535", Target("127.9.8.7", 65535)),
        ("[::1]:6000", Target("::1", 6000)),
        (":6000", Target("127.0.0.1", 6000)),
    ],
)
def test_loopback_targets_are_accepted(value: str, expected: Target) -> None:
    assert parse_target(value) == expected


@pytest.mark.parametrize(
    "value", ["10.0.0.1:6000", "example.com:6000", "0.0.0.0:6000", "[2001:db8::1]:6000"]
)
def test_other_hosts_are_refused(value: str) -> None:
    with pytest.raises(AddressError, match="only targets this machine"):
        parse_target(value)


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "x:y"])
def test_malformed_addresses_are_refused(value: str) -> None:
    with pytest.raises(AddressError, match="host:port"):
        parse_target(value)


def test_is_loopback() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("192.168.1.1") and not is_loopback("not-a-host")


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_the_mpim_command_refuses_a_remote_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("c2c", "--addr", "8.8.8.8:6000")
    assert exc.value.code == 2
    assert "only targets this machine" in capsys.readouterr().err


def test_c2c_flags_become_a_spec() -> None:
    args = _parse(
        "c2c",
        "--addr",
        "127.0.0.1:6000",
        "--pairs",
        "10",
        "--window",
        "4",
        "--workers",
        "2",
        "--rates",
        "1000,2000",
        "--run-id",
        "abcd1234",
        "--no-progress",
    )
    spec = build_spec(args)
    assert isinstance(spec, C2CSpec)
    assert (spec.pairs, spec.window, spec.rates) == (10, 4, (1000.0, 2000.0))
    assert spec.common.run_id == "abcd1234"
    assert spec.common.username("s", 3) == "babcd1234s3"
    assert spec.common.progress is False


def test_several_gateways_and_server_pids() -> None:
    args = _parse(
        "c2c",
        "--addr",
        "127.0.0.1:6300",
        "--addr",
        "localhost:6310",
        "--server-pid",
        "11",
        "--server-pid",
        "12",
    )
    common = build_spec(args).common
    assert common.targets == (Target("127.0.0.1", 6300), Target("127.0.0.1", 6310))
    assert [common.target_for(i).port for i in range(3)] == [6300, 6310, 6300]
    assert common.server_pids == (11, 12)


def test_each_scenario_builds() -> None:
    addr = ("--addr", "127.0.0.1:6000", "--workers", "1")
    assert isinstance(build_spec(_parse("group", *addr, "--members", "5")), GroupSpec)
    idle = build_spec(_parse("idle", *addr, "--connections", "5", "--users", "50"))
    assert isinstance(idle, IdleSpec) and idle.users == 5
    assert isinstance(build_spec(_parse("login", *addr)), LoginSpec)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("c2c", "--rate", "100", "--rates", "1,2"), "not both"),
        (("c2c", "--pairs", "0"), "--pairs"),
        (("c2c", "--pairs", "2", "--workers", "3"), "--workers must not exceed --pairs"),
        (("c2c", "--duration", "0"), "--duration"),
        (("c2c", "--duration", "100000"), "--duration"),
        (("c2c", "--rates", "0,10"), "rate"),
        (("c2c", "--run-id", "BAD!"), "--run-id"),
        (("group", "--members", "4", "--senders", "5"), "--senders"),
        (("idle", "--connections", "1000000"), "--connections"),
        (("c2c", "--workers", "0"), "--workers"),
        (("c2c", "--messages", "0"), "--messages"),
    ],
)
def test_out_of_range_values_are_named(argv: tuple[str, ...], message: str) -> None:
    args = _parse(argv[0], "--addr", "127.0.0.1:6000", *argv[1:])
    with pytest.raises(SpecError, match=message):
        build_spec(args)


def test_a_bad_value_exits_with_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("c2c", "--addr", "127.0.0.1:6000", "--pairs", "0")
    assert run_bench(args) == 2
    assert "--pairs" in capsys.readouterr().err


def test_bad_rates_are_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        _parse("c2c", "--addr", "127.0.0.1:6000", "--rates", "fast")


def test_work_is_split_without_overlap() -> None:
    assert split_evenly(10, 3) == [4, 3, 3]
    owned = [set(indices_for(w, 3, 10)) for w in range(3)]
    assert set().union(*owned) == set(range(10))
    assert sum(len(o) for o in owned) == 10


def test_usernames_fit_the_protocol_limit() -> None:
    common = CommonSpec(Target("127.0.0.1", 1), run_id="zzzzzzzz")
    assert len(common.username("i", 199_999)) <= 32
    assert len(common.password) >= 6
