"""Command parsing: typed commands and the exact error for each malformed input."""

from __future__ import annotations

import pytest

from mpim.errors import ErrorCode, MpimError
from mpim.protocol import commands as c
from mpim.protocol.commands import ParseLimits, parse_request


def err(line: str, limits: ParseLimits | None = None) -> ErrorCode:
    with pytest.raises(MpimError) as info:
        parse_request(line, limits)
    return info.value.code


def test_every_command_word_maps_to_its_class_case_insensitively() -> None:
    assert isinstance(parse_request("ping").command, c.Ping)
    assert isinstance(parse_request("PuLl").command, c.Pull)
    assert set(c.COMMANDS) == {
        "REGISTER", "LOGIN", "AUTH", "LOGOUT", "SEND", "PULL", "ADDFRIEND", "REMOVEFRIEND",
        "GETFRIENDS", "CREATEGROUP", "JOINGROUP", "LEAVEGROUP", "SENDGROUP", "GROUPS",
        "MEMBERS", "SYNC", "HISTORY", "STATUS", "PING", "QUIT",
    }  # fmt: skip


def test_send_text_is_rest_of_line_byte_for_byte() -> None:
    request = parse_request("SEND   42   hello   world  ")
    assert request.command == c.Send(42, "hello   world  ")
    assert parse_request("send 1 a:b text=c").command == c.Send(1, "a:b text=c")


def test_send_errors() -> None:
    assert err("SEND") is ErrorCode.MISSING_ARGUMENT
    assert err("SEND 5") is ErrorCode.EMPTY_TEXT
    assert err("SEND 5    ") is ErrorCode.EMPTY_TEXT
    assert err("SEND x hi") is ErrorCode.BAD_UID
    assert err("SEND 0 hi") is ErrorCode.BAD_UID
    assert err("SEND -1 hi") is ErrorCode.BAD_UID
    assert err("SEND 9223372036854775808 hi") is ErrorCode.BAD_UID
    assert err("SEND ５ hi") is ErrorCode.BAD_UID  # noqa: RUF001
    assert err("SEND ٣ hi") is ErrorCode.BAD_UID  # another script's digit
    assert err("SEND 05 hi") is ErrorCode.BAD_UID
    assert err("SEND +5 hi") is ErrorCode.BAD_UID
    assert err("SEND 1_0 hi") is ErrorCode.BAD_UID  # int() would take it
    assert err("SEND 12345678901234567890 hi") is ErrorCode.BAD_UID
    assert parse_request("SEND 9223372036854775807 hi").command == c.Send(2**63 - 1, "hi")


def test_text_limit_counts_utf8_bytes() -> None:
    limits = ParseLimits(max_text_bytes=4)
    assert parse_request("SEND 1 abcd", limits).command == c.Send(1, "abcd")
    assert err("SEND 1 abcde", limits) is ErrorCode.TEXT_TOO_LONG
    assert err("SEND 1 éé€", limits) is ErrorCode.TEXT_TOO_LONG
    # Short enough in characters that no encoding can pass the limit.
    assert parse_request("SEND 1 €€", ParseLimits(max_text_bytes=8)).command == c.Send(1, "€€")
    assert err("SEND 1 €€€", ParseLimits(max_text_bytes=8)) is ErrorCode.TEXT_TOO_LONG


def test_cid_prefix_only_on_sends() -> None:
    request = parse_request("@cid=abc-1_X SEND 3 hi")
    assert request.cid == "abc-1_X"
    assert parse_request("@cid=z SENDGROUP 3 hi").cid == "z"
    assert err("@cid= SEND 3 hi") is ErrorCode.BAD_CID
    assert err("@cid=a.b SEND 3 hi") is ErrorCode.BAD_CID
    assert err("@cid=" + "a" * 65 + " SEND 3 hi") is ErrorCode.BAD_CID
    assert err("@foo=1 SEND 3 hi") is ErrorCode.BAD_CID
    assert err("@cid=a PING") is ErrorCode.CID_NOT_ALLOWED


def test_register_validates_username_and_password() -> None:
    assert parse_request("REGISTER Al.i-c_e 123456").command == c.Register("Al.i-c_e", "123456")
    assert err("REGISTER alice 12345") is ErrorCode.BAD_PASSWORD
    assert err("REGISTER " + "a" * 33 + " 123456") is ErrorCode.BAD_USERNAME
    assert err("REGISTER al!ce 123456") is ErrorCode.BAD_USERNAME
    assert err("REGISTER alice") is ErrorCode.MISSING_ARGUMENT
    assert err("REGISTER alice pass word") is ErrorCode.TOO_MANY_ARGUMENTS


def test_login_does_not_reveal_which_part_is_malformed() -> None:
    assert parse_request("LOGIN x!y z").command == c.Login("x!y", "z")


def test_unknown_and_non_ascii_command_words() -> None:
    assert err("FROB 1") is ErrorCode.UNKNOWN_COMMAND
    assert err("ſend 1 hi") is ErrorCode.UNKNOWN_COMMAND  # noqa: RUF001 (uppercases to SEND)


def test_history_forms() -> None:
    assert parse_request("HISTORY 7").command == c.History(7, None, 50, None)
    assert parse_request("HISTORY g3 10 99").command == c.History(None, 3, 10, 99)
    assert parse_request("HISTORY G3 100000").command == c.History(None, 3, 500, None)
    assert err("HISTORY g0") is ErrorCode.BAD_GROUP_ID
    assert err("HISTORY 7 0") is ErrorCode.BAD_LIMIT
    assert err("HISTORY 7 5 x") is ErrorCode.BAD_BEFORE_ID
    assert err("HISTORY 7 5 6 7") is ErrorCode.TOO_MANY_ARGUMENTS


def test_sync_accepts_zero_but_not_negative() -> None:
    assert parse_request("SYNC 0").command == c.Sync(0)
    assert err("SYNC -1") is ErrorCode.BAD_SEQ
    assert err("SYNC") is ErrorCode.MISSING_ARGUMENT


def test_creategroup_name_and_optional_description() -> None:
    assert parse_request("CREATEGROUP team").command == c.CreateGroup("team", "")
    assert parse_request("CREATEGROUP team  the  best ").command == c.CreateGroup(
        "team", "the  best "
    )
    assert err("CREATEGROUP " + "n" * 65) is ErrorCode.BAD_GROUP_NAME


def test_commands_without_arguments_reject_extras() -> None:
    assert err("PING now") is ErrorCode.TOO_MANY_ARGUMENTS
    assert parse_request("  PING  ").command == c.Ping()


def test_split_rest_keeps_inner_and_trailing_spaces() -> None:
    assert c.split_rest("a  b  c ", 1) == (["a"], "b  c ")
    assert c.split_rest("a", 1) == (["a"], "")
