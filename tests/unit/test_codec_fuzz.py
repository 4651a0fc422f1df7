"""Property tests: no line, however malformed, makes the codec fail unexpectedly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mpim.errors import MpimError
from mpim.protocol.commands import COMMANDS, Request, parse_request
from mpim.protocol.framing import LineSplitter
from mpim.protocol.messages import MessageLine

words = st.sampled_from([*COMMANDS, *(w.lower() for w in COMMANDS), "@cid=x", "@cid=", "g1"])
tokens = st.one_of(words, st.text(max_size=20), st.integers().map(str), st.just(" " * 3))
lines = st.lists(tokens, max_size=6).map(" ".join)


@settings(max_examples=400)
@given(lines)
def test_parse_request_returns_a_request_or_a_client_error(line: str) -> None:
    try:
        request = parse_request(line)
    except MpimError:
        return
    assert isinstance(request, Request)
    assert type(request.command).NAME in COMMANDS


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_splitter_never_returns_a_line_over_the_limit(data: bytes, chunk: int) -> None:
    splitter = LineSplitter(max_line=64)
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out += splitter.feed(data[i : i + chunk])
    assert all(len(line) <= 64 and b"\n" not in line for line in out)
    assert splitter.pending <= 64


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_message_line_parse_rejects_or_round_trips(line: str) -> None:
    try:
        parsed = MessageLine.parse(line)
    except ValueError:
        return
    assert MessageLine.parse(parsed.format()) == parsed
