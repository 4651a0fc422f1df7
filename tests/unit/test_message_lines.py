"""MSG/GMSG lines: format and parse round-trip."""

from __future__ import annotations

import pytest

from mpim.proto import common_pb2
from mpim.protocol.messages import MessageLine, format_message, is_message_line


def test_direct_message_line_format() -> None:
    msg = common_pb2.Message(id=9, from_uid=3, to_uid=4, ts_ms=1700, text="hi  text=x ")
    assert format_message(msg, 5) == "MSG id=9 from=3 ts=1700 seq=5 text=hi  text=x "


def test_group_message_line_format_and_round_trip() -> None:
    msg = common_pb2.Message(
        id=10, kind=common_pb2.MESSAGE_KIND_GROUP, from_uid=3, group_id=8, ts_ms=1, text="yo"
    )
    line = format_message(msg, 2)
    assert line == "GMSG id=10 group=8 from=3 ts=1 seq=2 text=yo"
    assert MessageLine.parse(line) == MessageLine(10, 3, 1, 2, "yo", group_id=8)
    assert MessageLine.parse(line).format() == line


def test_parse_rejects_other_lines() -> None:
    assert not is_message_line("+OK pong")
    with pytest.raises(ValueError):
        MessageLine.parse("+OK pong")
    with pytest.raises(ValueError):
        MessageLine.parse("MSG id=1 from=2 ts=3 seq=4")
