"""Hostile and malformed input over real TCP: the framing rules of protocol.md,
argument errors, pipelining floods, abrupt disconnects, slow readers and rate
limits. After each hostile case the server must still answer a fresh
connection and must not have lost any acknowledged message."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TOPOLOGIES, RunningServer, ServerFactory
from tests.support.checks import assert_nothing_pending, uid_of, wait_offline
from tests.support.lineclient import Account, LineClient

pytestmark = TOPOLOGIES

NO_SUCH_ID = 9_000_000_000
MAX_ID = 2**63 - 1
FAST_STORE = {"sqlite_synchronous": "NORMAL"}
MSG_TEXT = re.compile(r"MSG id=([1-9][0-9]*) from=[0-9]+ ts=[0-9]+ seq=([0-9]+) text=(.*)")


def msg_id_of(reply: str) -> int:
    match = re.fullmatch(r"\+OK msg_id=([1-9][0-9]*)", reply)
    assert match is not None, reply
    return int(match[1])


async def sync_texts(client: LineClient) -> list[tuple[int, int, str]]:
    """(msg_id, seq, text) of every message in the inbox, following SYNC paging."""
    out: list[tuple[int, int, str]] = []
    after = 0
    while True:
        lines, final = await client.cmd_multi(f"SYNC {after}", timeout=20)
        for line in lines:
            match = MSG_TEXT.fullmatch(line)
            assert match is not None, line
            out.append((int(match[1]), int(match[2]), match[3]))
        done = re.fullmatch(r"\+OK sync_done seq=([0-9]+)( more=1)?", final)
        assert done is not None, final
        after = int(done[1])
        if not done[2]:
            return out


async def login(server: RunningServer, account: Account) -> LineClient:
    client = await server.client()
    reply = await client.login(account.username, account.password)
    assert reply.startswith(f"+OK uid={account.uid} "), reply
    client.account = account
    return client


def reset(client: LineClient) -> None:
    """Drop the connection abruptly: RST, no FIN, unsent data discarded."""
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


@dataclass
class Witness:
    """A message acknowledged before the hostile part of a test."""

    recipient: Account
    msg_id: int
    text: str


async def witness(server: RunningServer) -> Witness:
    sender = await server.user()
    recipient = await server.user()
    assert recipient.account is not None
    text = f"acknowledged before trouble {uid_of(recipient)}"
    msg_id = msg_id_of(await sender.cmd(f"SEND {uid_of(recipient)} {text}"))
    assert (await recipient.read_line()).endswith(f" text={text}")
    return Witness(recipient.account, msg_id, text)


async def assert_still_serving(server: RunningServer, seen: Witness) -> None:
    """A fresh connection is answered, and the acknowledged message is still there."""
    fresh = await server.client()
    assert fresh.greeting.startswith("+OK")
    assert await fresh.cmd("PING") == "+OK pong"
    recipient = await login(server, seen.recipient)
    inbox = await sync_texts(recipient)
    assert (seen.msg_id, seen.text) in [(m, t) for m, _, t in inbox]
    await fresh.close()
    await recipient.close()


# -- greeting -------------------------------------------------------------------


async def test_on_connect_the_server_sends_one_greeting_line_beginning_ok(
    server: RunningServer,
) -> None:
    client = await server.client()
    assert client.greeting.startswith("+OK")
    # Exactly one line: the next one is the reply to the first command.
    assert await client.cmd("PING") == "+OK pong"


# -- line length ----------------------------------------------------------------


async def test_a_line_over_the_maximum_gets_line_too_long_and_the_connection_closes(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"max_line_bytes": 1024})
    seen = await witness(server)
    client = await server.client()
    await client.send_raw(b"PING\n" + b"A" * 1025 + b"\nPING\n")
    assert await client.expect_closed() == ["+OK pong", "-ERR line too long"]
    await assert_still_serving(server, seen)


async def test_a_line_of_exactly_the_maximum_is_accepted(server_factory: ServerFactory) -> None:
    server = await server_factory(gateway={"max_line_bytes": 1024})
    alice = await server.user()
    bob = await server.user()
    prefix = f"SEND {uid_of(bob)} "
    text = "x" * (1024 - len(prefix))
    msg_id_of(await alice.cmd(prefix + text))
    assert (await bob.read_line()).endswith(f" text={text}")
    # The same with \r\n: the \r is dropped before the line is measured.
    await alice.send_raw((prefix + text + "\r\n").encode())
    msg_id_of(await alice.read_line())
    assert (await bob.read_line()).endswith(f" text={text}")
    await alice.send_raw((prefix + text + "y\n").encode())
    assert await alice.expect_closed() == ["-ERR line too long"]


async def test_an_unterminated_overlong_tail_gets_line_too_long_and_closes(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"max_line_bytes": 1024})
    seen = await witness(server)
    client = await server.client()
    await client.send_raw(b"PING\n" + b"B" * 5000)  # no newline, ever
    assert await client.expect_closed() == ["+OK pong", "-ERR line too long"]
    await assert_still_serving(server, seen)


async def test_an_overlong_line_dribbled_in_small_writes_is_cut_off(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"max_line_bytes": 1024})
    seen = await witness(server)
    client = await server.client()
    for _ in range(6):  # 1200 bytes, 200 per write, no newline
        await client.send_raw(b"C" * 200)
    assert await client.expect_closed() == ["-ERR line too long"]
    await assert_still_serving(server, seen)


async def test_the_default_maximum_is_64_kib(server: RunningServer) -> None:
    client = await server.client()
    # "PING" plus trailing spaces: a valid 65536-byte command.
    await client.send_raw(b"PING" + b" " * (65536 - 4) + b"\n")
    assert await client.read_line() == "+OK pong"
    await client.send_raw(b"PING" + b" " * (65537 - 4) + b"\n")
    assert await client.expect_closed() == ["-ERR line too long"]


# -- line endings, encoding, blank lines --------------------------------------


async def test_crlf_line_endings_are_accepted_and_the_cr_dropped(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    await alice.send_raw(b"PING\r\n")
    assert await alice.read_line() == "+OK pong"
    await alice.send_raw(f"SEND {uid_of(bob)} crlf text\r\n".encode())
    msg_id_of(await alice.read_line())
    push = await bob.read_line()
    assert push.endswith(" text=crlf text")
    await alice.send_raw(b"PING\r\nPING\nPING\r\n")
    assert [await alice.read_line() for _ in range(3)] == ["+OK pong"] * 3


INVALID_UTF8 = [
    b"\xff",
    b"PING \xfe",
    b"\xc3\x28",  # bad continuation byte
    b"\xe2\x82",  # truncated sequence
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xc0\xaf",  # overlong encoding of '/'
    b"\xf5\x80\x80\x80",  # beyond U+10FFFF
    b"SEND 1 caf\xe9",  # latin-1, not UTF-8
    b"\x80PING",
]


@pytest.mark.parametrize("logged_in", [False, True])
async def test_invalid_utf8_gets_an_error_and_the_connection_lives_on(
    server: RunningServer, logged_in: bool
) -> None:
    seen = await witness(server)
    client = await server.user() if logged_in else await server.client()
    for raw in INVALID_UTF8:
        await client.send_raw(raw + b"\n")
        assert await client.read_line() == "-ERR invalid utf-8", raw
        assert await client.cmd("PING") == "+OK pong"
    await assert_still_serving(server, seen)


async def test_invalid_utf8_in_a_send_stores_nothing(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    await alice.send_raw(f"SEND {uid_of(bob)} ".encode() + b"\x80\x80 bad\n")
    assert await alice.read_line() == "-ERR invalid utf-8"
    assert await alice.cmd("PING") == "+OK pong"
    assert await sync_texts(bob) == []
    await assert_nothing_pending(bob, via=alice)


async def test_a_nul_byte_gets_invalid_character_and_stores_nothing(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    for raw in (b"\x00", b"PING\x00", b"\x00PING", b"SEND {uid} a\x00b", b"SEND {uid} \x00"):
        await alice.send_raw(raw.replace(b"{uid}", str(uid_of(bob)).encode()) + b"\n")
        assert await alice.read_line() == "-ERR invalid character", raw
        assert await alice.cmd("PING") == "+OK pong"
    assert await sync_texts(bob) == []
    await assert_nothing_pending(bob, via=alice)


@pytest.mark.parametrize("logged_in", [False, True])
async def test_empty_and_space_only_lines_get_no_reply(
    server: RunningServer, logged_in: bool
) -> None:
    client = await server.user() if logged_in else await server.client()
    await client.send_raw(b"\n\n   \n\r\n \r\n" + b" " * 500 + b"\nPING\n")
    # A reply to any blank line would have come before the pong.
    assert await client.read_line() == "+OK pong"


async def test_a_tab_only_line_is_not_blank_and_gets_one_error(server: RunningServer) -> None:
    client = await server.client()
    await client.send_raw(b"\t\nPING\n")
    assert await client.read_line() == "-ERR unknown command"
    assert await client.read_line() == "+OK pong"


# -- commands and arguments -----------------------------------------------------


UNKNOWN = [
    "FOO",
    "FOO bar baz",
    "PINGPONG",
    "P ING",
    "SEND2 1 hi",
    "\uff30\uff29\uff2e\uff27",  # full-width PING
    "p\u0131ng",  # dotless i: str.upper() would make it PING
    "P\u0130NG",  # dotted capital I
    "+OK pong",
    "-ERR x",
    "MSG id=1 from=2 ts=3 seq=4 text=x",
    "@cid=abc",
    "@cid=abc   ",
    "PING\r\r",  # only one \r is dropped
]


@pytest.mark.parametrize("logged_in", [False, True])
async def test_unknown_commands_get_unknown_command(server: RunningServer, logged_in: bool) -> None:
    client = await server.user() if logged_in else await server.client()
    for line in UNKNOWN:
        assert await client.cmd(line) == "-ERR unknown command", line
        assert await client.cmd("PING") == "+OK pong"


async def test_command_words_are_case_insensitive(server: RunningServer) -> None:
    client = await server.client()
    for word in ("ping", "Ping", "pInG", "PING"):
        assert await client.cmd(word) == "+OK pong"


async def test_every_command_word_is_case_insensitive_when_logged_in(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    bob_uid = uid_of(bob)
    msg_id_of(await alice.cmd(f"send {bob_uid} lower"))
    msg_id_of(await alice.cmd(f"@cid=mixed SeNd {bob_uid} mixed"))
    assert await alice.cmd("getfriends") == "+OK friends: "
    assert await alice.cmd(f"AddFriend {bob_uid}") == "+OK friend added"
    gid_reply = await alice.cmd("createGroup room")
    gid = int(gid_reply.removeprefix("+OK group_id="))
    assert (await alice.cmd(f"sendgroup {gid} hi")).startswith("+OK group_msg_id=")
    assert await alice.cmd("groups") == f"+OK groups: {gid}"
    assert await alice.cmd(f"members {gid}") == f"+OK members: {uid_of(alice)}"
    assert await alice.cmd(f"status {bob_uid}") == f"+OK uid={bob_uid} online=1"
    assert await alice.cmd_multi("sync 0") == ([], "+OK sync_done seq=0")
    lines, done = await alice.cmd_multi(f"history {bob_uid}")
    assert (len(lines), done) == (2, "+OK history_done")
    assert await alice.cmd_multi("pull") == ([], "+OK pull_done")
    assert await alice.cmd("Logout") == "+OK logout success"
    assert await alice.cmd("quit") == "+OK bye"


async def test_extra_spaces_around_arguments_are_ignored(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd("   PING") == "+OK pong"
    assert await alice.cmd("PING    ") == "+OK pong"
    assert await alice.cmd(f"STATUS    {uid_of(bob)}   ") == f"+OK uid={uid_of(bob)} online=1"
    assert await alice.cmd_multi("  SYNC   0  ") == ([], "+OK sync_done seq=0")


MALFORMED = [
    ("SEND", "-ERR missing argument"),
    ("SEND {peer}", "-ERR empty text"),
    ("SENDGROUP", "-ERR missing argument"),
    ("ADDFRIEND", "-ERR missing argument"),
    ("ADDFRIEND {peer} {peer}", "-ERR too many arguments"),
    ("REMOVEFRIEND", "-ERR missing argument"),
    ("JOINGROUP", "-ERR missing argument"),
    ("JOINGROUP 1 2", "-ERR too many arguments"),
    ("LEAVEGROUP", "-ERR missing argument"),
    ("MEMBERS", "-ERR missing argument"),
    ("STATUS", "-ERR missing argument"),
    ("STATUS {peer} extra", "-ERR too many arguments"),
    ("SYNC", "-ERR missing argument"),
    ("SYNC 0 0", "-ERR too many arguments"),
    ("HISTORY", "-ERR missing argument"),
    ("HISTORY {peer} 1 2 3", "-ERR too many arguments"),
    ("CREATEGROUP", "-ERR missing argument"),
    ("PING now", "-ERR too many arguments"),
    ("PULL 10", "-ERR too many arguments"),
    ("GETFRIENDS all", "-ERR too many arguments"),
    ("GROUPS x", "-ERR too many arguments"),
    ("LOGOUT now", "-ERR too many arguments"),
    ("QUIT now", "-ERR too many arguments"),
    ("REGISTER a", "-ERR missing argument"),
    ("REGISTER abc secret1 more", "-ERR too many arguments"),
    ("LOGIN abc", "-ERR missing argument"),
    ("AUTH", "-ERR missing argument"),
    ("AUTH a b", "-ERR too many arguments"),
]


async def test_missing_and_extra_arguments_get_a_specific_error(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    for template, error in MALFORMED:
        line = template.format(peer=uid_of(bob))
        assert await alice.cmd(line) == error, line
        assert await alice.cmd("PING") == "+OK pong"  # the connection lives on
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "  # and is still logged in


BAD_IDS = [
    "0",
    "-1",
    "9223372036854775808",
    "99999999999999999999999",
    "1e3",
    "\uff0b5",  # full-width plus
    "+5",
    "\uff11",  # full-width digit one
    "\u0665",  # Arabic-Indic digit five
    "05",
    "1.0",
    "0x10",
    "abc",
    "5abc",
    "1_000",
]


async def test_malformed_uids_get_bad_uid(server: RunningServer) -> None:
    alice = await server.user()
    for bad in BAD_IDS:
        for line in (
            f"SEND {bad} hi",
            f"@cid=x1 SEND {bad} hi",
            f"ADDFRIEND {bad}",
            f"REMOVEFRIEND {bad}",
            f"STATUS {bad}",
            f"HISTORY {bad}",
        ):
            assert await alice.cmd(line) == "-ERR bad uid", line


async def test_malformed_group_ids_get_bad_group_id(server: RunningServer) -> None:
    alice = await server.user()
    for bad in BAD_IDS:
        for line in (
            f"SENDGROUP {bad} hi",
            f"@cid=x2 SENDGROUP {bad} hi",
            f"JOINGROUP {bad}",
            f"LEAVEGROUP {bad}",
            f"MEMBERS {bad}",
            f"HISTORY g{bad}",
        ):
            assert await alice.cmd(line) == "-ERR bad group_id", line


async def test_the_largest_id_is_well_formed_but_unknown(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"SEND {MAX_ID} hi") == "-ERR no such user"
    assert await alice.cmd(f"STATUS {MAX_ID}") == "-ERR no such user"
    assert await alice.cmd(f"ADDFRIEND {MAX_ID}") == "-ERR no such user"
    assert await alice.cmd(f"HISTORY {MAX_ID}") == "-ERR no such user"
    assert await alice.cmd(f"JOINGROUP {MAX_ID}") == "-ERR no such group"
    assert await alice.cmd(f"SENDGROUP {MAX_ID} hi") == "-ERR no such group"
    assert await alice.cmd(f"HISTORY g{MAX_ID}") == "-ERR no such group"


async def test_text_over_max_text_bytes_is_refused_counting_bytes_not_characters(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"max_text_bytes": 100})
    alice = await server.user()
    bob = await server.user()
    gid = int((await alice.cmd("CREATEGROUP room")).removeprefix("+OK group_id="))
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    accepted = ["x" * 100, "é" * 50, "🙂" * 25, "x" * 98 + "  "]
    refused = ["x" * 101, "é" * 51, "🙂" * 26, "x" * 99 + "é", "x" * 99 + "  "]
    for text in accepted:
        msg_id_of(await alice.cmd(f"SEND {uid_of(bob)} {text}"))
        assert (await alice.cmd(f"SENDGROUP {gid} {text}")).startswith("+OK group_msg_id=")
    for text in refused:
        assert await alice.cmd(f"SEND {uid_of(bob)} {text}") == "-ERR text too long"
        assert await alice.cmd(f"SENDGROUP {gid} {text}") == "-ERR text too long"
    for _ in range(2 * len(accepted)):
        await bob.read_line()
    lines, done = await bob.cmd_multi("SYNC 0")
    assert done == f"+OK sync_done seq={2 * len(accepted)}"
    assert [line.partition(" text=")[2] for line in lines[::2]] == accepted


async def test_the_default_text_limit_is_16_kib(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    msg_id_of(await alice.cmd(f"SEND {uid_of(bob)} {'t' * 16384}"))
    assert await alice.cmd(f"SEND {uid_of(bob)} {'t' * 16385}") == "-ERR text too long"


# -- pipelining -----------------------------------------------------------------


async def test_5000_pipelined_pings_in_one_write_all_get_replies_in_order(
    server: RunningServer,
) -> None:
    seen = await witness(server)
    client = await server.client()
    await client.send_raw(b"PING\n" * 5000 + b"STATUS 1\n")
    replies = [await client.read_line() for _ in range(5001)]
    assert replies[:5000] == ["+OK pong"] * 5000
    assert replies[5000] == "-ERR not login"  # the last command's reply comes last
    await assert_still_serving(server, seen)


async def test_pipelined_mixed_commands_are_answered_one_each_in_order(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    bob_uid = uid_of(bob)
    rounds = 30
    lines: list[str] = []
    expected: list[str | re.Pattern[str]] = []
    for i in range(rounds):
        lines += [
            "PING",
            f"STATUS {bob_uid}",
            "FOO",
            "",
            f"SEND {bob_uid} m{i}",
            "SYNC 0",
            "GETFRIENDS",
            "SEND 0 bad",
        ]
        expected += [
            "+OK pong",
            f"+OK uid={bob_uid} online=1",
            "-ERR unknown command",
            re.compile(r"\+OK msg_id=[1-9][0-9]*"),
            "+OK sync_done seq=0",
            "+OK friends: ",
            "-ERR bad uid",
        ]
    await alice.send_raw(("\n".join(lines) + "\n").encode())
    for want in expected:
        got = await alice.read_line()
        if isinstance(want, str):
            assert got == want
        else:
            assert want.fullmatch(got), got
    texts = [MSG_TEXT.fullmatch(await bob.read_line()) for _ in range(rounds)]
    assert [m[3] for m in texts if m] == [f"m{i}" for i in range(rounds)]


async def test_random_garbage_gets_exactly_one_error_per_non_blank_line(
    server: RunningServer,
) -> None:
    seen = await witness(server)
    rng = random.Random(20240611)
    lines = []
    for _ in range(1500):
        length = rng.choice([0, 1, 2, 5, 30, 200])
        lines.append(bytes(rng.getrandbits(8) for _ in range(length)).replace(b"\n", b""))

    def answered(line: bytes) -> bool:
        line = line.removesuffix(b"\r")
        try:
            return line.decode("utf-8").strip(" ") != ""
        except UnicodeDecodeError:
            return True

    want = sum(answered(line) for line in lines)
    client = await server.client()
    await client.send_raw(b"\n".join(lines) + b"\nPING\n")
    replies = [await client.read_line() for _ in range(want)]
    assert all(reply.startswith("-ERR ") for reply in replies), set(replies)
    assert await client.read_line() == "+OK pong"
    await assert_still_serving(server, seen)


# -- disconnects ----------------------------------------------------------------


async def test_a_half_sent_line_then_disconnect_is_discarded(server: RunningServer) -> None:
    seen = await witness(server)
    alice = await server.user()
    bob = await server.user()
    await alice.send_raw(f"SEND {uid_of(bob)} never finished".encode())
    await alice.close()
    await wait_offline(bob, uid_of(alice))
    assert await sync_texts(bob) == []
    carol = await server.user()
    await assert_nothing_pending(bob, via=carol)
    await assert_still_serving(server, seen)


async def test_complete_lines_before_a_half_close_still_run_and_the_tail_is_dropped(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    await alice.send_raw(f"PING\nSEND {uid_of(bob)} complete\nSEND {uid_of(bob)} partial".encode())
    alice.writer.write_eof()
    replies = await alice.expect_closed()
    assert replies[0] == "+OK pong"
    msg_id_of(replies[1])
    assert len(replies) == 2
    assert (await bob.read_line()).endswith(" text=complete")
    assert [t for _, _, t in await sync_texts(bob)] == ["complete"]
    carol = await server.user()
    await assert_nothing_pending(bob, via=carol)


async def test_abrupt_disconnect_mid_pipeline_loses_no_acknowledged_message(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(store=FAST_STORE)
    seen = await witness(server)
    alice = await server.user()
    bob = await server.user()
    total = 150
    await alice.send_raw("".join(f"SEND {uid_of(bob)} burst {i}\n" for i in range(total)).encode())
    acked = [msg_id_of(await alice.read_line()) for _ in range(10)]
    reset(alice)
    observer = await server.user()
    await wait_offline(observer, uid_of(alice))
    assert bob.account is not None
    inbox = await sync_texts(await login(server, bob.account))
    # What was stored is a gap-free prefix of what was sent, each message once.
    assert len(inbox) >= len(acked)
    assert [t for _, _, t in inbox] == [f"burst {i}" for i in range(len(inbox))]
    assert [s for _, s, _ in inbox] == list(range(1, len(inbox) + 1))
    assert [m for m, _, _ in inbox[: len(acked)]] == acked
    await assert_still_serving(server, seen)


async def test_abrupt_disconnect_during_a_pull_keeps_the_messages_for_sync(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(store=FAST_STORE, gateway={"pull_page_size": 10})
    alice = await server.user()
    bob = await server.user()
    assert bob.account is not None
    await bob.close()
    await wait_offline(alice, uid_of(bob))
    total = 120
    await alice.send_raw(
        "".join(f"SEND {uid_of(bob)} backlog {i}\n" for i in range(total)).encode()
    )
    acked = [msg_id_of(await alice.read_line()) for _ in range(total)]
    puller = await login(server, bob.account)
    await puller.send_raw(b"PULL\n")
    reset(puller)
    await wait_offline(alice, uid_of(bob))
    again = await login(server, bob.account)
    assert [m for m, _, _ in await sync_texts(again)] == acked
    # PULL goes on from wherever the dead connection stopped: a suffix, in order.
    lines, done = await again.cmd_multi("PULL")
    assert done == "+OK pull_done"
    pulled = [int(m[1]) for m in map(MSG_TEXT.fullmatch, lines) if m]
    assert pulled == acked[len(acked) - len(pulled) :]


async def test_connections_that_vanish_at_once_do_not_disturb_the_server(
    server: RunningServer,
) -> None:
    seen = await witness(server)
    for i in range(30):
        _, writer = await asyncio.open_connection(server.host, server.port)
        if i % 3 == 0:
            writer.transport.abort()
        elif i % 3 == 1:
            writer.write(b"PING\nREGISTER x")
            writer.close()
        else:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.write(b"PING\n" * 100)
            writer.transport.abort()
    await assert_still_serving(server, seen)


# -- slow readers ---------------------------------------------------------------


async def connect_non_reading(server: RunningServer) -> LineClient:
    """A client with tiny buffers that, once registered, never reads again."""
    client = await connect_small(server)
    await client.register()
    return client


async def connect_small(server: RunningServer) -> LineClient:
    """A client with tiny buffers: what it does not read stays on the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    client = LineClient(reader, writer)
    client.greeting = await client.read_line()
    server.clients.append(client)
    return client


async def test_a_reader_that_never_reads_is_cut_off_without_stalling_other_chats(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(store=FAST_STORE, gateway={"max_output_bytes": 65536})
    seen = await witness(server)
    slow = await connect_non_reading(server)
    assert slow.account is not None
    slow_uid = uid_of(slow)
    senders = [await server.user() for _ in range(8)]
    carol = await server.user()
    dave = await server.user()
    per_sender = 250
    text = "z" * 1500

    async def flood(sender: LineClient) -> list[int]:
        await sender.send_raw(
            "".join(f"SEND {slow_uid} {text}\n" for _ in range(per_sender)).encode()
        )
        return [msg_id_of(await sender.read_line(timeout=20)) for _ in range(per_sender)]

    floods = asyncio.gather(*(flood(s) for s in senders))
    # Meanwhile carol and dave chat, and every message arrives promptly.
    for i in range(20):
        started = time.monotonic()
        msg_id_of(await carol.cmd(f"SEND {uid_of(dave)} during flood {i}", timeout=2))
        assert (await dave.read_line(timeout=2)).endswith(f" text=during flood {i}")
        assert time.monotonic() - started < 2
    acked = {m for ids in await floods for m in ids}
    assert len(acked) == per_sender * len(senders)

    # The slow connection was disconnected ...
    await wait_offline(carol, slow_uid)
    received = 0
    try:
        while await asyncio.wait_for(slow.reader.readline(), 5):
            received += 1
    except ConnectionError:
        pass
    assert received < len(acked)
    # ... and every message is still in its inbox, in seq order.
    again = await login(server, slow.account)
    inbox = await sync_texts(again)
    assert {m for m, _, _ in inbox} == acked
    assert [s for _, s, _ in inbox] == list(range(1, len(acked) + 1))
    await assert_still_serving(server, seen)


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to (tcp_wmem's maximum)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


async def test_a_pull_takes_its_pages_only_as_fast_as_its_client_reads_them(
    server_factory: ServerFactory,
) -> None:
    # Written page after page regardless, a PULL buffered the whole backlog
    # for a client that did not read it: memory grew with the inbox.
    page, text = 20, "p" * 16000
    server = await server_factory(store=FAST_STORE, gateway={"pull_page_size": page})
    # What a stalled PULL can take before it waits: the kernel's send buffer
    # (it grows up to tcp_wmem's maximum), the transport's high-water mark,
    # and a page being written. The backlog is twice that, 1,000 at least.
    taken_at_most = (kernel_send_buffer_max() + 256 * 1024 + 2 * page * len(text)) // len(text)
    count = max(1000, 2 * taken_at_most)
    owner = await server.user()
    account = owner.account
    assert account is not None
    await owner.close()
    sender = await server.user()
    await wait_offline(sender, account.uid)
    await sender.send_raw("".join(f"SEND {account.uid} {text}\n" for _ in range(count)).encode())
    acked = {msg_id_of(await sender.read_line(timeout=60)) for _ in range(count)}

    stalled = await connect_small(server)
    assert (await stalled.login(account.username, account.password)).startswith("+OK")
    await stalled.send("PULL")  # and never reads again
    await asyncio.sleep(1)  # it takes what the buffers on its way hold, then waits

    other = await login(server, account)
    lines, done = await other.cmd_multi("PULL", timeout=60)
    assert done == "+OK pull_done"
    # What the stalled PULL took fit in the buffers on its way; the rest is here.
    assert len(lines) >= count - taken_at_most
    pulled = {int(m[1]) for line in lines if (m := MSG_TEXT.fullmatch(line))}
    assert len(pulled) == len(lines) and pulled <= acked
    inbox = await sync_texts(other)
    assert {m for m, _, _ in inbox} == acked  # nothing lost either way


# -- rate limiting --------------------------------------------------------------

RATE_LIMIT = {"rate_limit_per_second": 5, "rate_limit_burst": 5}


async def test_a_connection_over_its_rate_gets_rate_limited_and_others_are_unaffected(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway=RATE_LIMIT)
    greedy = await server.client()
    await greedy.send_raw(b"PING\n" * 15)
    replies = [await greedy.read_line() for _ in range(15)]
    assert replies[:5] == ["+OK pong"] * 5
    assert set(replies) <= {"+OK pong", "-ERR rate limited"}
    assert replies.count("-ERR rate limited") >= 5

    polite = await server.client()
    for _ in range(5):
        assert await polite.cmd("PING") == "+OK pong"

    # The greedy connection recovers as its bucket refills.
    deadline = time.monotonic() + 3.0
    reply = ""
    while time.monotonic() < deadline:
        reply = await greedy.cmd("PING")
        if reply == "+OK pong":
            break
        assert reply == "-ERR rate limited"
        await asyncio.sleep(0.05)
    assert reply == "+OK pong"


async def test_rate_limited_sends_are_not_stored_and_acknowledged_ones_are(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway=RATE_LIMIT)
    alice = await server.user()  # REGISTER took one token
    bob = await server.user()
    await alice.send_raw("".join(f"SEND {uid_of(bob)} r{i}\n" for i in range(10)).encode())
    replies = [await alice.read_line() for _ in range(10)]
    acked = [(msg_id_of(r), f"r{i}") for i, r in enumerate(replies) if r.startswith("+OK")]
    assert len(acked) >= 4
    assert all(r == "-ERR rate limited" for r in replies if not r.startswith("+OK"))
    assert "-ERR rate limited" in replies
    for _ in acked:
        await bob.read_line()
    assert [(m, t) for m, _, t in await sync_texts(bob)] == acked
