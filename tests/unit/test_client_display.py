"""Rendering server lines for a person: timestamps, arrows, replies, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mpim.client.display import (
    format_line,
    format_message,
    format_reply,
    format_status,
    format_timestamp,
    safe_text,
)
from mpim.client.reply import Reply, parse_kv
from mpim.protocol.messages import MessageLine


def ms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


NOW = ms(2024, 5, 1, 18, 0, 0)
TS = ms(2024, 5, 1, 14, 3, 7)


def direct(text: str = "hello", sender: int = 5, seq: int = 1, ts: int = TS) -> MessageLine:
    return MessageLine(id=10, sender=sender, ts_ms=ts, seq=seq, text=text)


def group(text: str = "hi", sender: int = 5, gid: int = 3) -> MessageLine:
    return MessageLine(id=11, sender=sender, ts_ms=TS, seq=2, text=text, group_id=gid)


def ok(status: str, *lines: str) -> Reply:
    return Reply(list(lines), status)


# --- timestamps ---


def test_timestamp_today_shows_time_only() -> None:
    assert format_timestamp(TS, now_ms=NOW, tz=UTC) == "14:03:07"


def test_timestamp_other_day_shows_date() -> None:
    assert format_timestamp(TS, now_ms=NOW + 86_400_000, tz=UTC) == "2024-05-01 14:03:07"


def test_timestamp_is_in_the_given_time_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert format_timestamp(TS, now_ms=NOW, tz=plus2) == "16:03:07"


def test_timestamp_uses_local_time_by_default() -> None:
    expected = datetime.fromtimestamp(TS / 1000).strftime("%H:%M:%S")
    assert format_timestamp(TS, now_ms=TS) == expected


def test_absurd_timestamp_does_not_crash() -> None:
    assert format_timestamp(10**20, now_ms=NOW, tz=UTC) == f"ts={10**20}"


# --- message lines ---


def test_direct_message_reads_sender_to_me() -> None:
    assert format_message(direct(), now_ms=NOW, tz=UTC) == "[14:03:07] 5 → me: hello"


def test_group_message_shows_group_and_sender() -> None:
    assert format_message(group(), now_ms=NOW, tz=UTC) == "[14:03:07] #3 5: hi"


def test_my_own_direct_message_in_history_reads_me_to_peer() -> None:
    line = format_message(direct(sender=7, seq=0), now_ms=NOW, my_uid=7, peer_uid=5, tz=UTC)
    assert line == "[14:03:07] me → 5: hello"


def test_my_own_direct_message_without_known_peer() -> None:
    assert "me → ?: hello" in format_message(direct(sender=7), now_ms=NOW, my_uid=7, tz=UTC)


def test_my_own_group_message_reads_me() -> None:
    assert format_message(group(sender=7), now_ms=NOW, my_uid=7, tz=UTC) == "[14:03:07] #3 me: hi"


def test_text_with_colons_and_spaces_is_shown_verbatim() -> None:
    msg = direct(text="  a: b  c ")
    assert format_message(msg, now_ms=NOW, tz=UTC).endswith("me:   a: b  c ")


def test_format_line_parses_protocol_lines() -> None:
    raw = f"MSG id=10 from=5 ts={TS} seq=1 text=hello there"
    assert format_line(raw, now_ms=NOW, tz=UTC) == "[14:03:07] 5 → me: hello there"
    graw = f"GMSG id=11 group=3 from=5 ts={TS} seq=2 text=x=y text=z"
    assert format_line(graw, now_ms=NOW, tz=UTC) == "[14:03:07] #3 5: x=y text=z"


def test_format_line_shows_other_lines_as_server_lines() -> None:
    assert format_line("NOTICE hi", now_ms=NOW) == "server: NOTICE hi"
    assert format_line("MSG id=x text=broken", now_ms=NOW) == "server: MSG id=x text=broken"


# --- terminal safety ---


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("ünïcödé ✓ 你好", "ünïcödé ✓ 你好"),
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07", "bell\\x07"),
        ("tab\there", "tab\\x09here"),
        ("\x9b31m", "\\x9b31m"),
        ("rtl\u202eabc", "rtl\\u202eabc"),
    ],
)
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert safe_text(text) == shown


def test_message_text_is_escaped() -> None:
    assert "\x1b" not in format_message(direct(text="\x1b]0;pwned\x07"), now_ms=NOW, tz=UTC)


# --- replies ---


@pytest.mark.parametrize(
    ("word", "status", "shown"),
    [
        ("REGISTER", "+OK uid=5 token=abc", "registered and logged in as uid 5"),
        ("LOGIN", "+OK uid=5 token=abc", "logged in as uid 5"),
        ("AUTH", "+OK uid=5", "session resumed as uid 5"),
        ("LOGOUT", "+OK logout success", "logged out"),
        ("SEND", "+OK msg_id=12", "sent (msg_id=12)"),
        ("SENDGROUP", "+OK group_msg_id=13", "sent to group (msg_id=13)"),
        ("ADDFRIEND", "+OK friend added", "friend added"),
        ("REMOVEFRIEND", "+OK friend removed", "friend removed"),
        ("GETFRIENDS", "+OK friends: 3,7,12", "friends: 3, 7, 12"),
        ("GETFRIENDS", "+OK friends: ", "no friends yet"),
        ("GETFRIENDS", "+OK friends:", "no friends yet"),
        ("CREATEGROUP", "+OK group_id=4", "group #4 created"),
        ("JOINGROUP", "+OK joined group", "joined group"),
        ("LEAVEGROUP", "+OK left group", "left group"),
        ("GROUPS", "+OK groups: 1,4", "your groups: #1, #4"),
        ("GROUPS", "+OK groups: ", "you are in no groups"),
        ("MEMBERS", "+OK members: 3,7", "members: 3, 7"),
        ("STATUS", "+OK uid=5 online=1", "user 5 is online"),
        ("STATUS", "+OK uid=5 online=0", "user 5 is offline"),
        ("PING", "+OK pong", "pong"),
        ("QUIT", "+OK bye", "bye"),
        ("PULL", "+OK pull_done", "no new messages"),
        ("SYNC", "+OK sync_done seq=9", "synced up to seq 9 (0 messages)"),
        ("HISTORY", "+OK history_done", "end of history (0 messages)"),
        ("FUTURE", "+OK something new", "something new"),
    ],
)
def test_status_lines_read_naturally(word: str, status: str, shown: str) -> None:
    assert format_status(word, ok(status)) == shown


def test_errors_are_labelled_and_hinted() -> None:
    assert format_status("SEND", ok("-ERR no such user")) == "error: no such user"
    shown = format_status("PULL", ok("-ERR not login"))
    assert shown.startswith("error: not login") and "login:<user>:<password>" in shown


def test_pull_reply_lists_messages_then_count() -> None:
    reply = ok(
        "+OK pull_done",
        f"MSG id=1 from=5 ts={TS} seq=1 text=a",
        f"GMSG id=2 group=3 from=6 ts={TS} seq=2 text=b",
    )
    assert format_reply("PULL", reply, now_ms=NOW, tz=UTC) == [
        "[14:03:07] 5 → me: a",
        "[14:03:07] #3 6: b",
        "2 new messages",
    ]


def test_one_message_is_singular() -> None:
    reply = ok("+OK pull_done", f"MSG id=1 from=5 ts={TS} seq=1 text=a")
    assert format_reply("PULL", reply, now_ms=NOW, tz=UTC)[-1] == "1 new message"


def test_history_is_shown_oldest_first() -> None:
    reply = ok(
        "+OK history_done",
        f"MSG id=2 from=7 ts={TS} seq=0 text=reply",
        f"MSG id=1 from=5 ts={TS} seq=3 text=question",
    )
    shown = format_reply("HISTORY", reply, now_ms=NOW, my_uid=7, peer_uid=5, tz=UTC)
    assert shown == [
        "[14:03:07] 5 → me: question",
        "[14:03:07] me → 5: reply",
        "end of history (2 messages)",
    ]


def test_parse_kv_reads_key_values_and_skips_words() -> None:
    assert parse_kv("+OK uid=5 token=abc") == {"uid": "5", "token": "abc"}
    assert parse_kv("+OK sync_done seq=9 more=1") == {"seq": "9", "more": "1"}
    assert parse_kv("+OK pong") == {}
    assert parse_kv("+OK a=b=c") == {"a": "b=c"}


def test_reply_ok_and_detail() -> None:
    assert ok("+OK pong").ok and ok("+OK pong").detail == "pong"
    assert not ok("-ERR bad uid").ok and ok("-ERR bad uid").detail == "bad uid"
