"""Typed input -> protocol line: both input forms, free text, and local errors."""

from __future__ import annotations

import pytest

from mpim.client.commands import (
    Blank,
    InputError,
    Parsed,
    Quit,
    ServerCommand,
    ShowHelp,
    help_text,
    translate,
)


def line_of(text: str, last_seq: int = 0) -> str:
    result = translate(text, last_seq=last_seq)
    assert isinstance(result, ServerCommand), result
    return result.line


def error_of(text: str) -> str:
    result = translate(text)
    assert isinstance(result, InputError), result
    return result.message


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("register:alice:123456", "REGISTER alice 123456"),
        ("login:alice:123456", "LOGIN alice 123456"),
        ("logout", "LOGOUT"),
        ("chat:5:Hello World!", "SEND 5 Hello World!"),
        ("pull", "PULL"),
        ("addfriend:5", "ADDFRIEND 5"),
        ("removefriend:5", "REMOVEFRIEND 5"),
        ("getfriends", "GETFRIENDS"),
        ("creategroup:name:desc", "CREATEGROUP name desc"),
        ("creategroup:name", "CREATEGROUP name"),
        ("joingroup:3", "JOINGROUP 3"),
        ("leavegroup:3", "LEAVEGROUP 3"),
        ("sendgroup:3:hi", "SENDGROUP 3 hi"),
        ("groups", "GROUPS"),
        ("members:3", "MEMBERS 3"),
        ("history:5", "HISTORY 5"),
        ("history:g3", "HISTORY g3"),
        ("history:g3:20", "HISTORY g3 20"),
        ("history:5:20:100", "HISTORY 5 20 100"),
        ("sync:7", "SYNC 7"),
        ("sync:0", "SYNC 0"),
        ("status:5", "STATUS 5"),
        ("ping", "PING"),
        ("auth:abcdefABCDEF0123456789_-", "AUTH abcdefABCDEF0123456789_-"),
    ],
)
def test_colon_form_maps_to_protocol_line(typed: str, line: str) -> None:
    assert line_of(typed) == line


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("register alice 123456", "REGISTER alice 123456"),
        ("login   alice   123456", "LOGIN alice 123456"),
        ("chat 5 Hello", "SEND 5 Hello"),
        ("chat 5 Hello World!", "SEND 5 Hello World!"),
        ("sendgroup 3 hi there", "SENDGROUP 3 hi there"),
        ("creategroup team our team room", "CREATEGROUP team our team room"),
        ("history g3 20 100", "HISTORY g3 20 100"),
        ("addfriend 5", "ADDFRIEND 5"),
        ("members\t3", "MEMBERS 3"),
        ("sync 12", "SYNC 12"),
    ],
)
def test_space_form_maps_to_protocol_line(typed: str, line: str) -> None:
    assert line_of(typed) == line


def test_colons_inside_chat_text_are_kept() -> None:
    assert line_of("chat:5:meet at 10:30: room b:") == "SEND 5 meet at 10:30: room b:"


def test_space_form_text_may_contain_colons() -> None:
    assert line_of("chat 5 time: 10:30") == "SEND 5 time: 10:30"


def test_inner_and_trailing_spaces_of_text_are_kept() -> None:
    assert line_of("chat:5:a  b  ") == "SEND 5 a  b  "
    assert line_of("chat 5 a  b  ") == "SEND 5 a  b  "


def test_leading_spaces_of_text_are_dropped_as_the_server_would() -> None:
    assert line_of("chat:5:   hi") == "SEND 5 hi"


def test_group_description_keeps_colons() -> None:
    assert line_of("creategroup:ops:on call: 24/7") == "CREATEGROUP ops on call: 24/7"


def test_password_may_contain_colons_in_colon_form() -> None:
    assert line_of("register:alice:pa:ss:word") == "REGISTER alice pa:ss:word"


def test_command_word_is_case_insensitive() -> None:
    assert line_of("CHAT:5:Hi") == "SEND 5 Hi"
    assert line_of("GetFriends") == "GETFRIENDS"


def test_aliases() -> None:
    assert line_of("send 5 hi") == "SEND 5 hi"
    assert line_of("friends") == "GETFRIENDS"
    assert isinstance(translate("exit"), Quit)
    assert isinstance(translate("?"), ShowHelp)


def test_surrounding_whitespace_and_spaces_around_ids_are_ignored() -> None:
    assert line_of("  addfriend: 5 ") == "ADDFRIEND 5"
    assert line_of("\tpull  ") == "PULL"


def test_ids_are_normalised() -> None:
    assert line_of("addfriend:007") == "ADDFRIEND 7"


def test_hash_names_a_group_in_history() -> None:
    assert line_of("history:#3") == "HISTORY g3"
    assert line_of("history G3") == "HISTORY g3"


def test_sync_defaults_to_last_seen_seq() -> None:
    assert line_of("sync", last_seq=42) == "SYNC 42"
    assert line_of("sync:", last_seq=0) == "SYNC 0"
    assert line_of("sync:5", last_seq=42) == "SYNC 5"


def test_sends_may_carry_a_client_message_id_and_are_retry_safe() -> None:
    for typed in ("chat:5:hi", "sendgroup:3:hi"):
        result = translate(typed)
        assert isinstance(result, ServerCommand)
        assert result.accepts_cid and result.retry_safe


def test_commands_with_side_effects_are_not_retried() -> None:
    for typed in ("register:alice:123456", "creategroup:x", "joingroup:1", "addfriend:2"):
        result = translate(typed)
        assert isinstance(result, ServerCommand)
        assert not result.retry_safe and not result.accepts_cid


def test_auth_keeps_its_token_as_argument() -> None:
    result = translate("auth:tok_123456789abcdef")
    assert isinstance(result, ServerCommand)
    assert result.args == ("tok_123456789abcdef",)


@pytest.mark.parametrize("typed", ["", "   ", "\t"])
def test_blank_input_does_nothing(typed: str) -> None:
    assert translate(typed) == Blank()


@pytest.mark.parametrize("typed", ["quit", "QUIT", "quit:"])
def test_quit_is_a_local_action(typed: str) -> None:
    assert translate(typed) == Quit()


def test_help_lists_every_command_with_syntax() -> None:
    result = translate("help")
    assert isinstance(result, ShowHelp)
    assert result.text == help_text()
    for usage in (
        "help",
        "register:<user>:<password>",
        "login:<user>:<password>",
        "auth:<token>",
        "logout",
        "chat:<uid>:<text>",
        "pull",
        "sync[:<seq>]",
        "history:<uid|g<gid>>[:<limit>[:<before_id>]]",
        "addfriend:<uid>",
        "removefriend:<uid>",
        "getfriends",
        "creategroup:<name>[:<description>]",
        "joingroup:<gid>",
        "leavegroup:<gid>",
        "sendgroup:<gid>:<text>",
        "groups",
        "members:<gid>",
        "status:<uid>",
        "ping",
        "quit",
    ):
        assert usage in result.text


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("frobnicate", "unknown command 'frobnicate'"),
        ("chat", "missing uid"),
        ("chat:5", "missing text"),
        ("chat:5:", "missing text"),
        ("chat:5:   ", "missing text"),
        ("chat 5", "missing text"),
        ("chat::hi", "missing uid"),
        ("chat:abc:hi", "uid must be a positive whole number"),
        ("chat:0:hi", "uid must be a positive whole number"),
        ("chat:-1:hi", "uid must be a positive whole number"),
        ("chat:9223372036854775808:hi", "uid must be a positive whole number"),
        ("chat:5 hello", "missing text"),
        ("addfriend", "missing uid"),
        ("addfriend:5:6", "too many arguments"),
        ("addfriend 5 6", "too many arguments"),
        ("pull:now", "too many arguments"),
        ("register:alice", "missing password"),
        ("register:alice:123", "password must be 6-128 characters"),
        ("register alice 123 456", "password may not contain spaces"),
        ("register:bad name:123456", "username must be"),
        ("register:" + "a" * 33 + ":123456", "username must be"),
        ("history", "missing uid|g<gid>"),
        ("history:gx", "group id must be a positive whole number"),
        ("history:5:0", "limit must be a positive whole number"),
        ("history:5:10:x", "before_id must be a positive whole number"),
        ("history:5:10:20:30", "too many arguments"),
        ("sync:-1", "seq must be a whole number"),
        ("sync:x", "seq must be a whole number"),
        ("joingroup:g3", "group id must be a positive whole number"),
        ("creategroup:" + "n" * 65, "group name must be"),
        ("status", "missing uid"),
    ],
)
def test_malformed_input_gives_a_local_error(typed: str, expected: str) -> None:
    assert expected in error_of(typed)


def test_errors_carry_the_usage_of_the_command() -> None:
    assert error_of("chat:x:hi").endswith("usage: chat:<uid>:<text>")


def test_unknown_command_points_to_help() -> None:
    assert "help" in error_of("hello")


@pytest.mark.parametrize("typed", ["chat:5:a\nPING", "chat:5:a\rb", "chat:5:a\x00b"])
def test_line_breaks_and_nul_are_refused(typed: str) -> None:
    assert "line breaks or NUL" in error_of(typed)


def test_over_long_input_is_refused_locally() -> None:
    assert "too long" in error_of("chat:5:" + "x" * 70_000)


def test_long_but_acceptable_text_passes() -> None:
    assert line_of("chat:5:" + "x" * 16_000).endswith("x" * 16_000)


def test_translate_is_total_over_odd_input() -> None:
    odd = [":", "::", ":5:hi", "chat:", "#", "é", "chat 5", " : ", "history:g", "sync::"]
    for typed in odd:
        result: Parsed = translate(typed)
        assert isinstance(result, InputError | ServerCommand | Blank), (typed, result)
