"""LineSplitter: bytes in, bounded lines out, no sockets."""

from __future__ import annotations

from mpim.protocol.framing import LineSplitter


def test_splits_lines_and_drops_carriage_returns() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"PING\r\nSEND 1 a b\n") == [b"PING", b"SEND 1 a b"]
    assert splitter.pending == 0


def test_keeps_partial_line_until_terminated() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"PI") == []
    assert splitter.feed(b"NG\nQU") == [b"PING"]
    assert splitter.pending == 2
    assert splitter.feed(b"IT\n") == [b"QUIT"]


def test_only_the_trailing_cr_is_dropped() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"a\rb\r\r\n") == [b"a\rb\r"]


def test_overlong_line_sets_overflow_after_earlier_lines() -> None:
    splitter = LineSplitter(10)
    lines = splitter.feed(b"PING\n" + b"x" * 11 + b"\nPING\n")
    assert lines == [b"PING"]
    assert splitter.overflow
    assert splitter.feed(b"PING\n") == []


def test_unterminated_tail_over_limit_overflows_without_growing() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b"x" * 8) == []
    assert not splitter.overflow
    assert splitter.feed(b"x" * 8) == []
    assert splitter.overflow
    assert splitter.pending == 0


def test_line_exactly_at_limit_is_accepted() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b"y" * 10 + b"\r\n") == [b"y" * 10]
    assert not splitter.overflow


def test_thousands_of_lines_in_one_chunk() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"PING\n" * 5000) == [b"PING"] * 5000


def test_holds_no_buffer_between_whole_lines() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"") == []
    assert splitter.feed(b"PING\n") == [b"PING"]
    assert splitter._buf is None  # an idle connection keeps no bytearray
    assert splitter.feed(b"PI") == []
    assert splitter.feed(b"NG\r\nPING\n") == [b"PING", b"PING"]
    assert splitter._buf is None and splitter.pending == 0
