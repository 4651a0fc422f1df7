"""The text of a benchmark message carries its own identity and send time.

The receiver computes end-to-end latency from the text alone, so the tool works
against any server (no reliance on the server's ``ts=``, which has only
millisecond resolution and is stamped by the server, not the sender). Format::

    <run_id>:<round>:<seq>:<send_time_ns>[:<padding>]

``seq`` counts per sender and round from 0, which is what lets receivers detect
loss, duplication and reordering per sender→receiver pair. All parties run on
one machine, so ``time.time_ns()`` is a shared clock.
"""

from __future__ import annotations

from typing import Final

SEPARATOR: Final = b":"
#: Length of a stamp's fields after the run id for a one-digit round, a
#: five-digit seq and a 19-digit timestamp; used to size the padding so texts
#: come out within a few bytes of ``--size``.
_NOMINAL_FIELDS: Final = 1 + 1 + 1 + 5 + 1 + 19


def make_padding(size: int, run_id: bytes) -> bytes:
    """Padding that brings a stamp to about ``size`` bytes (empty if it already is)."""
    room = size - len(run_id) - _NOMINAL_FIELDS - 1
    return SEPARATOR + b"x" * room if room > 0 else b""


def encode_text(run_id: bytes, round_no: int, seq: int, ts_ns: int, padding: bytes = b"") -> bytes:
    """The message text for one send (no spaces, no line breaks)."""
    return b"%s:%d:%d:%d%s" % (run_id, round_no, seq, ts_ns, padding)


def parse_text(text: bytes) -> tuple[bytes, int, int, int] | None:
    """``(run_id, round, seq, ts_ns)`` from a stamp, or None if it is not one."""
    parts = text.split(SEPARATOR, 4)
    if len(parts) < 4:
        return None
    try:
        return parts[0], int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None


def parse_message_line(line: bytes) -> tuple[int, int, bytes] | None:
    """``(from_uid, inbox_seq, text)`` from a ``MSG``/``GMSG`` line; None if malformed.

    Written with ``bytes.find`` rather than the project's ``MessageLine`` parser
    because it runs once per delivery on the tool's hot path. ``inbox_seq`` is
    -1 when the server does not send ``seq=`` (older servers).
    """
    cut = line.find(b" text=")
    if cut < 0:
        return None
    start = line.find(b" from=", 0, cut)
    if start < 0:
        return None
    start += 6
    end = line.find(b" ", start, cut + 1)
    seq_at = line.find(b" seq=", 0, cut)
    try:
        sender = int(line[start:end])
        inbox_seq = (
            int(line[seq_at + 5 : line.find(b" ", seq_at + 5, cut + 1)]) if seq_at >= 0 else -1
        )
    except ValueError:
        return None
    return sender, inbox_seq, line[cut + 6 :]
