"""Messaging over real TCP: every delivery promise in protocol.md.

SEND/SENDGROUP, live MSG/GMSG pushes, PULL, SYNC, HISTORY, idempotent sends
with ``@cid=``, ordering, multi-device, STATUS, PING, QUIT and persistence
across a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from dataclasses import dataclass

from tests.conftest import TOPOLOGIES, RunningServer, ServerFactory
from tests.support.checks import assert_nothing_pending, uid_of, wait_offline
from tests.support.lineclient import LineClient

pytestmark = TOPOLOGIES

_MSG = re.compile(
    r"MSG id=(?P<id>[1-9][0-9]*) from=(?P<sender>[1-9][0-9]*) ts=(?P<ts>[0-9]+)"
    r" seq=(?P<seq>[0-9]+) text=(?P<text>.*)",
    re.DOTALL,
)
_GMSG = re.compile(
    r"GMSG id=(?P<id>[1-9][0-9]*) group=(?P<group>[1-9][0-9]*) from=(?P<sender>[1-9][0-9]*)"
    r" ts=(?P<ts>[0-9]+) seq=(?P<seq>[0-9]+) text=(?P<text>.*)",
    re.DOTALL,
)
NO_SUCH_UID = 9_000_000_000
# Bulk tests are about order and paging, not fsync: skip the per-commit fsync.
FAST_STORE = {"sqlite_synchronous": "NORMAL"}

# Pushes that arrived while a client waited for a command's reply, per client.
_early_pushes: weakref.WeakKeyDictionary[LineClient, list[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Msg:
    """One parsed MSG or GMSG line."""

    id: int
    sender: int
    ts: int
    seq: int
    text: str
    group: int | None = None


def parse(line: str) -> Msg:
    """Parse a message line exactly; any other shape fails the test."""
    if match := _MSG.fullmatch(line):
        group = None
    elif match := _GMSG.fullmatch(line):
        group = int(match["group"])
    else:
        raise AssertionError(f"not a MSG/GMSG line: {line!r}")
    return Msg(
        int(match["id"]),
        int(match["sender"]),
        int(match["ts"]),
        int(match["seq"]),
        match["text"],
        group,
    )


def reply_id(reply: str, key: str = "msg_id") -> int:
    match = re.fullmatch(rf"\+OK {key}=([1-9][0-9]*)", reply)
    assert match is not None, reply
    return int(match[1])


async def command(client: LineClient, line: str) -> str:
    """Send a one-line command; return its reply, keeping pushes that come first."""
    await client.send(line)
    while True:
        got = await client.read_line()
        if got.startswith(("+", "-")):
            return got
        _early_pushes.setdefault(client, []).append(got)


async def next_push(client: LineClient) -> str:
    early = _early_pushes.get(client)
    if early:
        return early.pop(0)
    return await client.read_line()


async def send(sender: LineClient, to: LineClient, text: str) -> int:
    return reply_id(await command(sender, f"SEND {uid_of(to)} {text}"))


async def send_group(sender: LineClient, gid: int, text: str) -> int:
    return reply_id(await command(sender, f"SENDGROUP {gid} {text}"), "group_msg_id")


async def create_group(owner: LineClient, *members: LineClient) -> int:
    gid = reply_id(await owner.cmd("CREATEGROUP room"), "group_id")
    for member in members:
        assert await member.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    return gid


async def read_msgs(client: LineClient, count: int) -> list[Msg]:
    return [parse(await next_push(client)) for _ in range(count)]


async def multi(client: LineClient, line: str, done: str) -> list[Msg]:
    """Run PULL/SYNC/HISTORY (no pushes in flight); check its final line; return its messages."""
    assert not _early_pushes.get(client), "unread pushes would mix with the reply"
    lines, final = await client.cmd_multi(line)
    assert final == done, final
    return [parse(line) for line in lines]


async def sync_all(client: LineClient, after: int = 0) -> tuple[list[Msg], int]:
    """Follow SYNC paging to the end; (messages, final seq)."""
    out: list[Msg] = []
    while True:
        lines, final = await client.cmd_multi(f"SYNC {after}")
        out.extend(parse(line) for line in lines)
        match = re.fullmatch(r"\+OK sync_done seq=([0-9]+)( more=1)?", final)
        assert match is not None, final
        after = int(match[1])
        if not match[2]:
            return out, after


async def login_again(server: RunningServer, client: LineClient) -> LineClient:
    """A second connection (device) logged in as the same user."""
    assert client.account is not None
    device = await server.client()
    reply = await device.login(client.account.username, client.account.password)
    assert reply.startswith(f"+OK uid={client.account.uid} "), reply
    device.account = client.account
    return device


async def offline_user(server: RunningServer, observer: LineClient) -> LineClient:
    """A registered user whose only connection has gone; returns that (closed) client."""
    user = await server.user()
    await user.close()
    await wait_offline(observer, uid_of(user))
    return user


# -- SEND and the live push -----------------------------------------------------


async def test_send_is_acknowledged_then_pushed_as_an_exact_msg_line(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    before = int(time.time() * 1000)
    msg_id = await send(alice, bob, "hello bob")
    after = int(time.time() * 1000)
    line = await bob.read_line()
    match = re.fullmatch(
        rf"MSG id={msg_id} from={uid_of(alice)} ts=([0-9]+) seq=1 text=hello bob", line
    )
    assert match is not None, line
    assert before - 1000 <= int(match[1]) <= after + 1000
    await assert_nothing_pending(alice, via=bob)  # the sender gets no copy


async def test_group_message_is_pushed_as_an_exact_gmsg_line(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice, bob)
    msg_id = await send_group(alice, gid, "hello room")
    line = await bob.read_line()
    assert re.fullmatch(
        rf"GMSG id={msg_id} group={gid} from={uid_of(alice)} ts=[0-9]+ seq=1 text=hello room",
        line,
    ), line


TEXTS = [
    "a  b   c",
    "trailing spaces   ",
    "key: value: more::",
    "text=inside text=again",
    "seq=99 from=1 id=7",
    "@cid=abc SEND 1 nested",
    "-ERR not really",
    "+OK not really",
    "MSG id=1 from=2",
    "tab\there",
    "ünïcödé 漢字 emoji 🙂👍🏽 עברית",
    "x",
    "end with equals=",
    "not\u2028a\u2029line\x85break\x0bor\x0cthis",  # str.splitlines() would split these
    "carriage\rreturn inside",
    "zero\u200bwidth and combining e\u0301",
]


async def test_text_is_kept_byte_for_byte_in_push_sync_pull_and_history(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await offline_user(server, alice)
    gid = await create_group(alice, bob)
    for text in TEXTS:
        # Several spaces before the text: it starts at the first non-space.
        reply_id(await alice.cmd(f"SEND {uid_of(bob)}    {text}"))
        reply_id(await alice.cmd(f"SENDGROUP   {gid}  {text}"), "group_msg_id")
        reply_id(await alice.cmd(f"SEND {uid_of(carol)} {text}"))
    twice = [t for text in TEXTS for t in (text, text)]
    assert [m.text for m in await read_msgs(bob, len(twice))] == twice
    assert [m.text for m in (await sync_all(bob))[0]] == twice
    newest_first = TEXTS[::-1]
    history = await multi(bob, f"HISTORY {uid_of(alice)}", "+OK history_done")
    assert [m.text for m in history] == newest_first
    history = await multi(alice, f"HISTORY g{gid}", "+OK history_done")
    assert [m.text for m in history] == newest_first
    # And in PULL, for a recipient who was offline.
    carol = await login_again(server, carol)
    assert [m.text for m in await multi(carol, "PULL", "+OK pull_done")] == TEXTS


async def test_send_with_empty_text_is_refused(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    for line in ("SEND {uid}", "SEND {uid} ", "SEND {uid}      "):
        assert await alice.cmd(line.format(uid=uid_of(bob))) == "-ERR empty text"
    await assert_nothing_pending(bob, via=alice)


async def test_sendgroup_with_empty_text_is_refused(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice, bob)
    assert await alice.cmd(f"SENDGROUP {gid}") == "-ERR empty text"
    assert await alice.cmd(f"SENDGROUP {gid}    ") == "-ERR empty text"
    await assert_nothing_pending(bob, via=alice)


async def test_send_to_an_unknown_user_is_no_such_user(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"SEND {NO_SUCH_UID} hello?") == "-ERR no such user"
    assert await alice.cmd("SEND 9223372036854775807 hello?") == "-ERR no such user"


async def test_a_uid_unknown_before_registration_works_once_registered(
    server: RunningServer,
) -> None:
    alice = await server.user()
    future_uid = uid_of(alice) + 1
    assert await alice.cmd(f"SEND {future_uid} too early") == "-ERR no such user"
    assert await alice.cmd(f"STATUS {future_uid}") == "-ERR no such user"
    bob = await server.user()
    assert uid_of(bob) == future_uid
    await send(alice, bob, "now")
    assert [m.text for m in await read_msgs(bob, 1)] == ["now"]
    assert await alice.cmd(f"STATUS {future_uid}") == f"+OK uid={future_uid} online=1"


async def test_send_to_myself_is_refused(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"SEND {uid_of(alice)} note to self") == "-ERR cannot send to self"
    assert await multi(alice, "SYNC 0", "+OK sync_done seq=0") == []


async def test_strangers_may_chat_without_being_friends(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "
    await send(alice, bob, "hi stranger")
    assert (await read_msgs(bob, 1))[0].text == "hi stranger"


# -- seq ------------------------------------------------------------------------


async def test_seq_is_gap_free_from_1_across_direct_and_group_conversations(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    g1 = await create_group(alice, bob, carol)
    g2 = await create_group(carol, bob)
    await send(alice, bob, "a1")
    await send_group(carol, g1, "g1 from carol")
    await send(carol, bob, "c1")
    await send_group(bob, g1, "bob's own group message")  # takes no seq of bob's
    await send_group(carol, g2, "g2 from carol")
    await send(alice, bob, "a2")
    await send_group(alice, g1, "g1 from alice")
    pushed = await read_msgs(bob, 6)
    assert [m.seq for m in pushed] == [1, 2, 3, 4, 5, 6]
    assert [m.text for m in pushed] == [
        "a1",
        "g1 from carol",
        "c1",
        "g2 from carol",
        "a2",
        "g1 from alice",
    ]
    assert [m.group for m in pushed] == [None, g1, None, g2, None, g1]
    # Every recipient has its own sequence.
    alice_got = await read_msgs(alice, 2)
    assert [(m.seq, m.text) for m in alice_got] == [
        (1, "g1 from carol"),
        (2, "bob's own group message"),
    ]
    carol_got = await read_msgs(carol, 2)
    assert [(m.seq, m.text) for m in carol_got] == [
        (1, "bob's own group message"),
        (2, "g1 from alice"),
    ]
    # SYNC agrees with what was pushed.
    assert await multi(bob, "SYNC 0", "+OK sync_done seq=6") == pushed


async def test_group_sender_gets_no_copy_of_its_own_message(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice, bob)
    await send_group(alice, gid, "mine")
    assert (await read_msgs(bob, 1))[0].text == "mine"
    assert await multi(alice, "SYNC 0", "+OK sync_done seq=0") == []
    assert await multi(alice, "PULL", "+OK pull_done") == []
    await assert_nothing_pending(alice, via=bob)


# -- multi-device ---------------------------------------------------------------


async def test_every_connection_of_a_user_gets_every_push_in_seq_order(
    server: RunningServer,
) -> None:
    alice = await server.user()
    carol = await server.user()
    bob_phone = await server.user()
    bob_laptop = await login_again(server, bob_phone)
    gid = await create_group(carol, bob_phone)
    for i in range(30):
        if i % 3 == 2:
            await send_group(carol, gid, f"m{i}")
        else:
            await send(alice, bob_phone, f"m{i}")
    for device in (bob_phone, bob_laptop):
        got = await read_msgs(device, 30)
        assert [m.seq for m in got] == list(range(1, 31))
        assert [m.text for m in got] == [f"m{i}" for i in range(30)]


async def test_a_message_pushed_to_one_device_is_not_pulled_by_another(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob_phone = await server.user()
    await send(alice, bob_phone, "seen on phone")
    assert (await read_msgs(bob_phone, 1))[0].text == "seen on phone"
    bob_laptop = await login_again(server, bob_phone)
    assert await multi(bob_laptop, "PULL", "+OK pull_done") == []
    # SYNC still shows it to the laptop.
    synced = await multi(bob_laptop, "SYNC 0", "+OK sync_done seq=1")
    assert [m.text for m in synced] == ["seen on phone"]


# -- PULL -----------------------------------------------------------------------


async def test_pull_returns_offline_messages_oldest_first_and_only_once(
    server: RunningServer,
) -> None:
    alice = await server.user()
    carol = await server.user()
    bob = await offline_user(server, alice)
    gid = await create_group(carol)
    bob = await login_again(server, bob)
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    await bob.close()
    await wait_offline(alice, uid_of(bob))

    ids = [
        await send(alice, bob, "one"),
        await send_group(carol, gid, "two"),
        await send(alice, bob, "three"),
    ]
    bob = await login_again(server, bob)
    await assert_nothing_pending(bob, via=carol)  # LOGIN pushes nothing by itself
    pulled = await multi(bob, "PULL", "+OK pull_done")
    assert [(m.id, m.seq, m.text) for m in pulled] == [
        (ids[0], 1, "one"),
        (ids[1], 2, "two"),
        (ids[2], 3, "three"),
    ]
    assert [m.group for m in pulled] == [None, gid, None]
    assert await multi(bob, "PULL", "+OK pull_done") == []
    # Another device does not get them again either.
    other = await login_again(server, bob)
    assert await multi(other, "PULL", "+OK pull_done") == []


async def test_auth_pushes_nothing_by_itself(server: RunningServer) -> None:
    alice = await server.user()
    bob = await offline_user(server, alice)
    await send(alice, bob, "waiting")
    assert bob.account is not None
    resumed = await server.client()
    assert await resumed.cmd(f"AUTH {bob.account.token}") == f"+OK uid={uid_of(bob)}"
    resumed.account = bob.account
    await assert_nothing_pending(resumed, via=alice)
    assert [m.text for m in await multi(resumed, "PULL", "+OK pull_done")] == ["waiting"]


async def test_pushes_delivered_live_are_not_returned_by_pull(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    for i in range(5):
        await send(alice, bob, f"live {i}")
    assert [m.seq for m in await read_msgs(bob, 5)] == [1, 2, 3, 4, 5]
    assert await multi(bob, "PULL", "+OK pull_done") == []


async def test_pull_returns_only_what_no_connection_was_sent(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    await send(alice, bob, "live")
    assert (await read_msgs(bob, 1))[0].text == "live"
    await bob.close()
    await wait_offline(alice, uid_of(bob))
    await send(alice, bob, "offline 1")
    await send(alice, bob, "offline 2")
    bob = await login_again(server, bob)
    pulled = await multi(bob, "PULL", "+OK pull_done")
    assert [(m.seq, m.text) for m in pulled] == [(2, "offline 1"), (3, "offline 2")]
    # New pushes after the PULL are live again, and still not pulled.
    await send(alice, bob, "live again")
    assert [(m.seq, m.text) for m in await read_msgs(bob, 1)] == [(4, "live again")]
    assert await multi(bob, "PULL", "+OK pull_done") == []


async def pull_while_pushing(
    server_factory: ServerFactory,
) -> tuple[list[Msg], list[Msg], list[Msg], int]:
    """Bob's phone runs a long, many-page PULL of a 300-message backlog while 6 new
    messages arrive; his laptop is online too. Returns (the phone's lines before
    ``+OK pull_done``, its pushes after it, the laptop's pushes, backlog size)."""
    server = await server_factory(gateway={"pull_page_size": 1})
    alice = await server.user()
    senders = [await server.user() for _ in range(6)]
    bob = await offline_user(server, alice)
    per_sender = 50

    async def backlog(sender: LineClient) -> None:
        await sender.send_raw(
            "".join(f"SEND {uid_of(bob)} old\n" for _ in range(per_sender)).encode()
        )
        for _ in range(per_sender):
            reply_id(await sender.read_line())

    await asyncio.gather(*(backlog(s) for s in senders))
    total = per_sender * len(senders)
    phone = await login_again(server, bob)
    laptop = await login_again(server, bob)
    await phone.send_raw(b"PULL\n")
    reply = [parse(await phone.read_line())]  # the PULL has begun
    for i in range(6):
        await send(alice, bob, f"new {i}")
    laptop_got = await read_msgs(laptop, 6)
    while (line := await phone.read_line()) != "+OK pull_done":
        reply.append(parse(line))
    await send(senders[0], bob, "marker")
    after: list[Msg] = []
    while (msg := parse(await phone.read_line())).text != "marker":
        after.append(msg)
    return reply, after, laptop_got, total


async def test_no_push_is_written_inside_a_long_pull_reply(
    server_factory: ServerFactory,
) -> None:
    reply, _after, laptop_got, backlog = await pull_while_pushing(server_factory)
    new = list(range(backlog + 1, backlog + 7))
    assert [m.seq for m in laptop_got] == new
    # The new messages were pushed to the laptop as soon as they were stored, long
    # before the page-by-page PULL reached seq > 300, so PULL must not return them;
    # and the phone's own pushes may not come between the PULL lines and pull_done.
    inside = [m.seq for m in reply if m.seq > backlog]
    assert inside == [], f"seqs {inside} came between the PULL lines and +OK pull_done"
    assert [m.seq for m in reply] == list(range(1, backlog + 1))


async def test_a_connection_in_a_long_pull_still_gets_every_push(
    server_factory: ServerFactory,
) -> None:
    reply, after, laptop_got, backlog = await pull_while_pushing(server_factory)
    new = list(range(backlog + 1, backlog + 7))
    assert [m.seq for m in laptop_got] == new
    # Promise 2: every live connection gets every push, in seq order.
    seen_by_phone = sorted({m.seq for m in reply if m.seq > backlog} | {m.seq for m in after})
    missing = sorted(set(new) - set(seen_by_phone))
    assert missing == [], f"the phone, online throughout, never got seqs {missing}"
    assert [m.seq for m in after] == sorted(m.seq for m in after)


async def test_pull_pages_internally_and_returns_everything_in_order(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"pull_page_size": 2})
    alice = await server.user()
    bob = await offline_user(server, alice)
    sent = [await send(alice, bob, f"p{i}") for i in range(7)]
    bob = await login_again(server, bob)
    pulled = await multi(bob, "PULL", "+OK pull_done")
    assert [m.id for m in pulled] == sent
    assert [m.seq for m in pulled] == list(range(1, 8))
    assert await multi(bob, "PULL", "+OK pull_done") == []


# -- SYNC -----------------------------------------------------------------------


async def test_sync_returns_everything_after_n_every_time(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    sent = [await send(alice, bob, f"s{i}") for i in range(5)]
    await read_msgs(bob, 5)
    for _ in range(2):
        synced = await multi(bob, "SYNC 0", "+OK sync_done seq=5")
        assert [(m.id, m.seq) for m in synced] == list(zip(sent, range(1, 6), strict=True))
    synced = await multi(bob, "SYNC 2", "+OK sync_done seq=5")
    assert [m.seq for m in synced] == [3, 4, 5]
    assert await multi(bob, "SYNC 5", "+OK sync_done seq=5") == []
    # Past the end: no lines, and the current highest seq.
    assert await multi(bob, "SYNC 100", "+OK sync_done seq=5") == []


async def test_sync_for_a_user_with_no_messages_reports_seq_0(server: RunningServer) -> None:
    alice = await server.user()
    assert await multi(alice, "SYNC 0", "+OK sync_done seq=0") == []
    assert await multi(alice, "SYNC 7", "+OK sync_done seq=0") == []


async def test_sync_does_not_change_what_pull_returns(server: RunningServer) -> None:
    alice = await server.user()
    bob = await offline_user(server, alice)
    await send(alice, bob, "x1")
    await send(alice, bob, "x2")
    bob = await login_again(server, bob)
    assert len(await multi(bob, "SYNC 0", "+OK sync_done seq=2")) == 2
    assert [m.text for m in await multi(bob, "PULL", "+OK pull_done")] == ["x1", "x2"]
    # ... and PULL does not change what SYNC returns.
    assert [m.text for m in await multi(bob, "SYNC 0", "+OK sync_done seq=2")] == ["x1", "x2"]


async def test_sync_pages_with_more_1_and_continues_from_the_reported_seq(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"sync_page_size": 3})
    alice = await server.user()
    bob = await offline_user(server, alice)
    sent = [await send(alice, bob, f"page {i}") for i in range(7)]
    bob = await login_again(server, bob)
    page1 = await multi(bob, "SYNC 0", "+OK sync_done seq=3 more=1")
    page2 = await multi(bob, "SYNC 3", "+OK sync_done seq=6 more=1")
    page3 = await multi(bob, "SYNC 6", "+OK sync_done seq=7")
    assert [m.id for m in page1 + page2 + page3] == sent
    assert [m.seq for m in page1 + page2 + page3] == list(range(1, 8))
    assert await multi(bob, "SYNC 7", "+OK sync_done seq=7") == []
    # Any starting point pages the same way.
    assert [m.seq for m in await multi(bob, "SYNC 1", "+OK sync_done seq=4 more=1")] == [2, 3, 4]


async def test_sync_rejects_malformed_seqs(server: RunningServer) -> None:
    alice = await server.user()
    for line, error in (
        ("SYNC", "-ERR missing argument"),
        ("SYNC -1", "-ERR bad seq"),
        ("SYNC abc", "-ERR bad seq"),
        ("SYNC 1.5", "-ERR bad seq"),
        ("SYNC +1", "-ERR bad seq"),
        ("SYNC 9223372036854775808", "-ERR bad seq"),
        ("SYNC 1 2", "-ERR too many arguments"),
    ):
        assert await alice.cmd(line) == error, line


async def test_no_push_interleaves_with_a_sync_reply(server_factory: ServerFactory) -> None:
    server = await server_factory(store=FAST_STORE)
    alice = await server.user()
    bob = await server.user()
    backlog = 300
    await alice.send_raw("".join(f"SEND {uid_of(bob)} old {i}\n" for i in range(backlog)).encode())
    for _ in range(backlog):
        reply_id(await alice.read_line())
    await read_msgs(bob, backlog)

    # Ask for the whole backlog while 100 new messages are being pushed.
    await bob.send_raw(b"SYNC 0\n")
    await alice.send_raw("".join(f"SEND {uid_of(bob)} new {i}\n" for i in range(100)).encode())
    before_done: list[Msg] = []
    while True:
        line = await bob.read_line()
        if line.startswith("+OK sync_done seq="):
            break
        before_done.append(parse(line))
    last = int(line.removeprefix("+OK sync_done seq="))
    # Pushes (seq > backlog) may precede the reply; then the reply is 1..last, unbroken.
    start = next(i for i, m in enumerate(before_done) if m.seq == 1)
    assert all(m.seq > backlog for m in before_done[:start])
    assert [m.seq for m in before_done[start:]] == list(range(1, last + 1))
    for _ in range(100):
        reply_id(await alice.read_line())
    # Every new message still arrives as a push, once, in order.
    pushed = [m.seq for m in before_done[:start]]
    while len(pushed) < 100:
        pushed.append(parse(await bob.read_line()).seq)
    assert pushed == list(range(backlog + 1, backlog + 101))


# -- HISTORY --------------------------------------------------------------------


async def test_history_shows_both_directions_newest_first_with_seq_0_for_mine(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    a1 = await send(alice, bob, "a1")
    b1 = await send(bob, alice, "b1")
    a2 = await send(alice, bob, "a2")
    await send(alice, carol, "other conversation")
    await send(carol, bob, "also other")
    await read_msgs(alice, 1)
    await read_msgs(bob, 3)

    mine = await multi(alice, f"HISTORY {uid_of(bob)}", "+OK history_done")
    assert [(m.id, m.sender, m.seq, m.text) for m in mine] == [
        (a2, uid_of(alice), 0, "a2"),
        (b1, uid_of(bob), 1, "b1"),
        (a1, uid_of(alice), 0, "a1"),
    ]
    theirs = await multi(bob, f"HISTORY {uid_of(alice)}", "+OK history_done")
    assert [(m.id, m.seq) for m in theirs] == [(a2, 2), (b1, 0), (a1, 1)]
    assert all(m.group is None for m in mine + theirs)


async def test_history_limit_and_before_id(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    sent = [await send(alice, bob, f"h{i}") for i in range(6)]
    newest_first = sent[::-1]
    peer = uid_of(bob)
    assert [m.id for m in await multi(alice, f"HISTORY {peer} 2", "+OK history_done")] == (
        newest_first[:2]
    )
    page = await multi(alice, f"HISTORY {peer} 2 {newest_first[1]}", "+OK history_done")
    assert [m.id for m in page] == newest_first[2:4]
    page = await multi(alice, f"HISTORY {peer} 50 {sent[0]}", "+OK history_done")
    assert page == []
    page = await multi(alice, f"HISTORY {peer} 50 {sent[3]}", "+OK history_done")
    assert [m.id for m in page] == [sent[2], sent[1], sent[0]]


async def test_history_defaults_to_50_and_clamps_large_limits_to_500(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(store=FAST_STORE)
    senders = [await server.user() for _ in range(6)]
    reader = await server.user()
    gid = await create_group(reader, *senders)
    per_sender = 85  # 510 messages in all

    async def flood(sender: LineClient, index: int) -> None:
        await sender.send_raw(
            "".join(f"SENDGROUP {gid} s{index}m{i}\n" for i in range(per_sender)).encode()
        )
        for _ in range(per_sender):
            reply = await sender.read_line()
            while not reply.startswith(("+", "-")):  # group pushes from the others
                reply = await sender.read_line()
            reply_id(reply, "group_msg_id")

    await asyncio.gather(*(flood(s, i) for i, s in enumerate(senders)))
    pushed = await read_msgs(reader, per_sender * len(senders))
    newest_first = sorted((m.id for m in pushed), reverse=True)

    default = await multi(reader, f"HISTORY g{gid}", "+OK history_done")
    assert [m.id for m in default] == newest_first[:50]
    clamped = await multi(reader, f"HISTORY g{gid} 100000", "+OK history_done")
    assert [m.id for m in clamped] == newest_first[:500]
    exact = await multi(reader, f"HISTORY g{gid} 500", "+OK history_done")
    assert len(exact) == 500


async def test_history_of_a_group_needs_membership_and_shows_seq_0_for_mine(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    outsider = await server.user()
    gid = await create_group(alice, bob)
    g1 = await send_group(alice, gid, "from alice")
    g2 = await send_group(bob, gid, "from bob")
    assert [m.id for m in await read_msgs(alice, 1)] == [g2]
    assert [m.id for m in await read_msgs(bob, 1)] == [g1]
    history = await multi(alice, f"HISTORY g{gid}", "+OK history_done")
    assert [(m.id, m.group, m.seq, m.text) for m in history] == [
        (g2, gid, 1, "from bob"),
        (g1, gid, 0, "from alice"),
    ]
    assert [m.id for m in await multi(bob, f"HISTORY G{gid} 1", "+OK history_done")] == [g2]
    assert await outsider.cmd(f"HISTORY g{gid}") == "-ERR not member"
    assert await outsider.cmd("HISTORY g9000000000") == "-ERR no such group"


async def test_history_of_an_empty_or_unknown_conversation(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await multi(alice, f"HISTORY {uid_of(bob)}", "+OK history_done") == []
    assert await alice.cmd(f"HISTORY {NO_SUCH_UID}") == "-ERR no such user"


async def test_history_rejects_malformed_arguments(server: RunningServer) -> None:
    alice = await server.user()
    peer = uid_of(await server.user())
    for args, error in (
        ("", "-ERR missing argument"),
        ("abc", "-ERR bad uid"),
        ("0", "-ERR bad uid"),
        ("gabc", "-ERR bad group_id"),
        ("g0", "-ERR bad group_id"),
        ("g", "-ERR bad group_id"),
        (f"{peer} 0", "-ERR bad limit"),
        (f"{peer} -5", "-ERR bad limit"),
        (f"{peer} ten", "-ERR bad limit"),
        (f"{peer} 10 0", "-ERR bad before_id"),
        (f"{peer} 10 x", "-ERR bad before_id"),
        (f"{peer} 10 5 7", "-ERR too many arguments"),
    ):
        line = f"HISTORY {args}".rstrip()
        assert await alice.cmd(line) == error, line


async def test_history_does_not_change_what_pull_returns(server: RunningServer) -> None:
    alice = await server.user()
    bob = await offline_user(server, alice)
    await send(alice, bob, "unread")
    bob = await login_again(server, bob)
    assert len(await multi(bob, f"HISTORY {uid_of(alice)}", "+OK history_done")) == 1
    assert [m.text for m in await multi(bob, "PULL", "+OK pull_done")] == ["unread"]


# -- idempotent sends -----------------------------------------------------------


async def test_a_send_retried_with_the_same_cid_is_stored_and_delivered_once(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    first = reply_id(await alice.cmd(f"@cid=retry-1 SEND {uid_of(bob)} only once"))
    second = reply_id(await alice.cmd(f"@cid=retry-1 SEND {uid_of(bob)} only once"))
    assert first == second
    pushed = await read_msgs(bob, 1)
    assert (pushed[0].id, pushed[0].text) == (first, "only once")
    assert [m.id for m in await multi(bob, "SYNC 0", "+OK sync_done seq=1")] == [first]
    history = await multi(alice, f"HISTORY {uid_of(bob)}", "+OK history_done")
    assert [m.id for m in history] == [first]
    await assert_nothing_pending(bob, via=alice)


async def test_a_cid_retry_on_a_new_connection_gets_the_same_msg_id(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    line = f"@cid=reconnect_42 SEND {uid_of(bob)} survive reconnects"
    first = reply_id(await alice.cmd(line))
    await alice.close()
    assert alice.account is not None
    resumed = await server.client()
    assert (await resumed.cmd(f"AUTH {alice.account.token}")).startswith("+OK uid=")
    assert reply_id(await resumed.cmd(line)) == first
    assert [m.id for m in await read_msgs(bob, 1)] == [first]
    assert len(await multi(bob, "SYNC 0", "+OK sync_done seq=1")) == 1
    await assert_nothing_pending(bob, via=resumed)


async def test_pipelined_duplicate_cids_get_one_message(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    line = f"@cid=burst SEND {uid_of(bob)} burst\n"
    await alice.send_raw((line * 5).encode())
    replies = {reply_id(await alice.read_line()) for _ in range(5)}
    assert len(replies) == 1
    assert [m.id for m in await read_msgs(bob, 1)] == list(replies)
    await assert_nothing_pending(bob, via=alice)


async def test_concurrent_retries_on_two_connections_are_stored_once(
    server: RunningServer,
) -> None:
    alice = await server.user()
    alice_too = await login_again(server, alice)
    bob = await server.user()
    lines = [f"@cid=race{i} SEND {uid_of(bob)} race {i}\n" for i in range(20)]
    payload = "".join(lines).encode()
    await asyncio.gather(alice.send_raw(payload), alice_too.send_raw(payload))
    first = [reply_id(await alice.read_line()) for _ in lines]
    second = [reply_id(await alice_too.read_line()) for _ in lines]
    assert first == second
    assert len(set(first)) == len(lines)
    assert [m.id for m in await read_msgs(bob, len(lines))] == first
    assert [m.id for m in await multi(bob, "SYNC 0", f"+OK sync_done seq={len(lines)}")] == first
    await assert_nothing_pending(bob, via=alice)


async def test_a_cid_is_unique_per_sender_whatever_the_recipient(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    first = reply_id(await alice.cmd(f"@cid=once SEND {uid_of(bob)} to bob"))
    assert reply_id(await alice.cmd(f"@cid=once SEND {uid_of(carol)} to carol")) == first
    assert [m.text for m in await read_msgs(bob, 1)] == ["to bob"]
    assert await multi(carol, "SYNC 0", "+OK sync_done seq=0") == []
    await assert_nothing_pending(carol, via=bob)


async def test_different_senders_may_reuse_a_cid(server: RunningServer) -> None:
    alice = await server.user()
    carol = await server.user()
    bob = await server.user()
    from_alice = reply_id(await alice.cmd(f"@cid=shared SEND {uid_of(bob)} from alice"))
    from_carol = reply_id(await carol.cmd(f"@cid=shared SEND {uid_of(bob)} from carol"))
    assert from_alice != from_carol
    assert [m.text for m in await read_msgs(bob, 2)] == ["from alice", "from carol"]


async def test_distinct_cids_are_distinct_messages(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    one = reply_id(await alice.cmd(f"@cid=one SEND {uid_of(bob)} same text"))
    two = reply_id(await alice.cmd(f"@cid=two SEND {uid_of(bob)} same text"))
    plain1 = await send(alice, bob, "same text")
    plain2 = await send(alice, bob, "same text")
    assert len({one, two, plain1, plain2}) == 4
    assert [m.id for m in await read_msgs(bob, 4)] == [one, two, plain1, plain2]


async def test_a_sendgroup_retried_with_the_same_cid_is_delivered_once(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    gid = await create_group(alice, bob, carol)
    line = f"@cid=g-1 SENDGROUP {gid} group once"
    first = reply_id(await alice.cmd(line), "group_msg_id")
    assert reply_id(await alice.cmd(line), "group_msg_id") == first
    for member in (bob, carol):
        assert [m.id for m in await read_msgs(member, 1)] == [first]
        assert len(await multi(member, "SYNC 0", "+OK sync_done seq=1")) == 1
        await assert_nothing_pending(member, via=alice)


async def test_a_malformed_cid_is_bad_cid(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice, bob)
    for prefix in ("@cid=", "@cid=bad!", "@cid=a.b", "@cid=" + "x" * 65, "@cid=é", "@foo=1", "@"):
        for line in (f"{prefix} SEND {uid_of(bob)} hello", f"{prefix} SENDGROUP {gid} hello"):
            assert await alice.cmd(line) == "-ERR bad cid", line
    await assert_nothing_pending(bob, via=alice)


async def test_a_64_character_cid_is_accepted(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    cid = "A-z_9" * 12 + "abcd"
    assert len(cid) == 64
    first = reply_id(await alice.cmd(f"@cid={cid} SEND {uid_of(bob)} long cid"))
    assert reply_id(await alice.cmd(f"@cid={cid}   SEND {uid_of(bob)} long cid")) == first


async def test_a_cid_on_a_command_other_than_send_is_refused(server: RunningServer) -> None:
    alice = await server.user()
    for command in (
        "PING",
        "PULL",
        "SYNC 0",
        "GETFRIENDS",
        "HISTORY 1",
        "CREATEGROUP g",
        "STATUS 1",
        "LOGOUT",
        "QUIT",
    ):
        reply = await alice.cmd(f"@cid=abc {command}")
        assert reply == "-ERR cid not allowed for this command", command
    # None of them ran: no group was created, and we are still logged in.
    assert await alice.cmd("GROUPS") == "+OK groups: "


# -- ordering -------------------------------------------------------------------


async def test_200_pipelined_sends_arrive_in_the_order_sent(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(store=FAST_STORE)
    alice = await server.user()
    bob = await server.user()
    count = 200
    await alice.send_raw("".join(f"SEND {uid_of(bob)} order {i}\n" for i in range(count)).encode())
    acked = [reply_id(await alice.read_line()) for _ in range(count)]
    pushed = await read_msgs(bob, count)
    assert [m.text for m in pushed] == [f"order {i}" for i in range(count)]
    assert [m.id for m in pushed] == acked
    assert [m.seq for m in pushed] == list(range(1, count + 1))
    synced, last = await sync_all(bob)
    assert [m.id for m in synced] == acked and last == count


async def test_two_senders_each_keep_their_own_order(server_factory: ServerFactory) -> None:
    server = await server_factory(store=FAST_STORE)
    alice = await server.user()
    carol = await server.user()
    bob = await server.user()
    count = 100
    await asyncio.gather(
        alice.send_raw("".join(f"SEND {uid_of(bob)} a{i}\n" for i in range(count)).encode()),
        carol.send_raw("".join(f"SEND {uid_of(bob)} c{i}\n" for i in range(count)).encode()),
    )
    for sender in (alice, carol):
        for _ in range(count):
            reply_id(await sender.read_line())
    pushed = await read_msgs(bob, 2 * count)
    assert [m.seq for m in pushed] == list(range(1, 2 * count + 1))
    assert [m.text for m in pushed if m.sender == uid_of(alice)] == [f"a{i}" for i in range(count)]
    assert [m.text for m in pushed if m.sender == uid_of(carol)] == [f"c{i}" for i in range(count)]


# -- STATUS, PING, QUIT ---------------------------------------------------------


async def test_status_follows_login_logout_and_disconnect(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    bob_uid = uid_of(bob)
    assert await alice.cmd(f"STATUS {bob_uid}") == f"+OK uid={bob_uid} online=1"
    assert await alice.cmd(f"STATUS {uid_of(alice)}") == f"+OK uid={uid_of(alice)} online=1"
    assert await bob.cmd("LOGOUT") == "+OK logout success"
    assert await alice.cmd(f"STATUS {bob_uid}") == f"+OK uid={bob_uid} online=0"
    assert bob.account is not None
    assert (await bob.login(bob.account.username, "secret1")).startswith("+OK uid=")
    assert await alice.cmd(f"STATUS {bob_uid}") == f"+OK uid={bob_uid} online=1"
    second = await login_again(server, bob)
    await bob.close()
    # One device left: still online.
    assert await second.cmd("PING") == "+OK pong"
    assert await alice.cmd(f"STATUS {bob_uid}") == f"+OK uid={bob_uid} online=1"
    await second.close()
    await wait_offline(alice, bob_uid)


async def test_a_logged_out_connection_gets_no_more_pushes(server: RunningServer) -> None:
    alice = await server.user()
    bob_phone = await server.user()
    bob_laptop = await login_again(server, bob_phone)
    assert await bob_phone.cmd("LOGOUT") == "+OK logout success"
    await send(alice, bob_phone, "after logout")
    assert [m.text for m in await read_msgs(bob_laptop, 1)] == ["after logout"]
    # The laptop has its push, so any push to the phone was written before this reply.
    assert await bob_phone.cmd("PING") == "+OK pong"
    # Logged in as someone else, the phone gets only that user's messages.
    carol = await server.user()
    assert carol.account is not None
    assert (await bob_phone.login(carol.account.username, "secret1")).startswith("+OK uid=")
    await send(alice, bob_laptop, "bob again")
    await send(alice, carol, "for carol")
    assert [m.text for m in await read_msgs(bob_laptop, 1)] == ["bob again"]
    assert [m.text for m in await read_msgs(carol, 1)] == ["for carol"]
    assert [m.text for m in await read_msgs(bob_phone, 1)] == ["for carol"]


async def test_status_of_an_unknown_user_or_bad_uid(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"STATUS {NO_SUCH_UID}") == "-ERR no such user"
    assert await alice.cmd("STATUS x") == "-ERR bad uid"
    assert await alice.cmd("STATUS") == "-ERR missing argument"


async def test_ping_answers_pong_before_and_after_login(server: RunningServer) -> None:
    client = await server.client()
    assert await client.cmd("PING") == "+OK pong"
    await client.register()
    assert await client.cmd("PING") == "+OK pong"
    assert await client.cmd("ping") == "+OK pong"


async def test_quit_replies_bye_then_closes(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd("QUIT") == "+OK bye"
    assert await alice.expect_closed() == []
    anonymous = await server.client()
    assert await anonymous.cmd("QUIT") == "+OK bye"
    assert await anonymous.expect_closed() == []


async def test_commands_pipelined_after_quit_are_not_executed(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    await alice.send_raw(f"PING\nQUIT\nSEND {uid_of(bob)} after quit\nPING\n".encode())
    assert await alice.expect_closed() == ["+OK pong", "+OK bye"]
    assert await multi(bob, "SYNC 0", "+OK sync_done seq=0") == []


async def test_quit_makes_the_user_offline(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await bob.cmd("QUIT") == "+OK bye"
    await bob.expect_closed()
    await wait_offline(alice, uid_of(bob))


# -- persistence ----------------------------------------------------------------


async def test_acknowledged_messages_friends_and_groups_survive_a_restart(
    server: RunningServer,
) -> None:
    alice = await server.user()
    carol = await server.user()
    bob = await server.user()
    gid = await create_group(carol, bob)
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await alice.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    await bob.close()
    await wait_offline(alice, uid_of(bob))
    sent = [
        await send(alice, bob, "before restart 1"),
        await send_group(carol, gid, "group before restart"),
        reply_id(await command(alice, f"@cid=keep SEND {uid_of(bob)} before restart 2")),
    ]

    await server.restart()

    bob = await login_again(server, bob)
    pulled = await multi(bob, "PULL", "+OK pull_done")
    assert [(m.id, m.seq) for m in pulled] == list(zip(sent, [1, 2, 3], strict=True))
    assert [m.text for m in pulled] == [
        "before restart 1",
        "group before restart",
        "before restart 2",
    ]
    assert [m.id for m in await multi(bob, "SYNC 0", "+OK sync_done seq=3")] == sent
    assert await bob.cmd("GETFRIENDS") == f"+OK friends: {uid_of(alice)}"
    assert await bob.cmd("GROUPS") == f"+OK groups: {gid}"
    members = ",".join(str(u) for u in sorted([uid_of(alice), uid_of(carol), uid_of(bob)]))
    assert await bob.cmd(f"MEMBERS {gid}") == f"+OK members: {members}"

    # Seqs continue, tokens still resume, and a cid retry still dedups.
    alice = await login_again(server, alice)
    retry = await command(alice, f"@cid=keep SEND {uid_of(bob)} before restart 2")
    assert reply_id(retry) == sent[2]
    await send(alice, bob, "after restart")
    assert [(m.seq, m.text) for m in await read_msgs(bob, 1)] == [(4, "after restart")]
    assert carol.account is not None
    resumed = await server.client()
    assert await resumed.cmd(f"AUTH {carol.account.token}") == f"+OK uid={uid_of(carol)}"


async def test_a_restart_tells_connected_clients_then_closes_them(
    server: RunningServer,
) -> None:
    # Connected outside server.clients, so the fixture's stop() does not close them first.
    idle = await LineClient.connect(server.host, server.port)
    logged_in = await LineClient.connect(server.host, server.port)
    try:
        await logged_in.register()
        await server.restart()
        for client in (idle, logged_in):
            assert await client.expect_closed() == ["-ERR server shutting down"]
    finally:
        await idle.close()
        await logged_in.close()
    assert await (await server.client()).cmd("PING") == "+OK pong"


async def test_sync_after_a_restart_returns_messages_already_pushed(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    sent = [await send(alice, bob, f"pushed {i}") for i in range(3)]
    assert [m.id for m in await read_msgs(bob, 3)] == sent
    await server.restart()
    bob = await login_again(server, bob)
    assert [m.id for m in await multi(bob, "SYNC 0", "+OK sync_done seq=3")] == sent
    assert await multi(bob, "PULL", "+OK pull_done") == []
