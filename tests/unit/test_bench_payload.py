"""Message stamps: what the sender writes is what the receiver reads back."""

from __future__ import annotations

from mpim.bench.payload import encode_text, make_padding, parse_message_line, parse_text


def test_a_stamp_round_trips() -> None:
    text = encode_text(b"abcd1234", 3, 17, 1_764_000_000_123_456_789)
    assert text == b"abcd1234:3:17:1764000000123456789"
    assert parse_text(text) == (b"abcd1234", 3, 17, 1_764_000_000_123_456_789)


def test_padding_brings_the_text_close_to_the_requested_size() -> None:
    padding = make_padding(200, b"abcd1234")
    text = encode_text(b"abcd1234", 1, 1234, 1_764_000_000_123_456_789, padding)
    assert abs(len(text) - 200) <= 5
    assert parse_text(text) == (b"abcd1234", 1, 1234, 1_764_000_000_123_456_789)


def test_no_padding_when_the_stamp_is_already_long_enough() -> None:
    assert make_padding(0, b"abcd1234") == b""
    assert make_padding(20, b"abcd1234") == b""


def test_texts_that_are_not_stamps_are_rejected() -> None:
    assert parse_text(b"hello world") is None
    assert parse_text(b"a:b:c:d") is None
    assert parse_text(b"run:1:2") is None


def test_message_lines_give_sender_inbox_seq_and_text() -> None:
    line = b"MSG id=99 from=7 ts=1764000000123 seq=42 text=run:1:2:3 with spaces "
    assert parse_message_line(line) == (7, 42, b"run:1:2:3 with spaces ")


def test_group_message_lines_parse_the_same_way() -> None:
    line = b"GMSG id=5 group=3 from=12 ts=1 seq=8 text=x"
    assert parse_message_line(line) == (12, 8, b"x")


def test_a_text_that_mentions_from_does_not_confuse_the_parser() -> None:
    line = b"MSG id=1 from=4 ts=1 seq=2 text= from=999 seq=77"
    assert parse_message_line(line) == (4, 2, b" from=999 seq=77")


def test_a_line_without_seq_reports_minus_one() -> None:
    assert parse_message_line(b"MSG id=1 from=4 ts=1 text=hi") == (4, -1, b"hi")


def test_malformed_lines_are_none() -> None:
    assert parse_message_line(b"+OK pong") is None
    assert parse_message_line(b"MSG id=1 ts=1 seq=1 text=x") is None
    assert parse_message_line(b"MSG id=1 from=abc ts=1 seq=1 text=x") is None
