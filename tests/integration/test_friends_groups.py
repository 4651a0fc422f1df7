"""Friends and groups over real TCP: ADDFRIEND, REMOVEFRIEND, GETFRIENDS,
CREATEGROUP, JOINGROUP, LEAVEGROUP, GROUPS, MEMBERS and who may SENDGROUP."""

from __future__ import annotations

import re

from tests.conftest import TOPOLOGIES, RunningServer
from tests.support.checks import assert_nothing_pending, uid_of
from tests.support.lineclient import LineClient

pytestmark = TOPOLOGIES

GMSG = re.compile(
    r"GMSG id=(?P<id>[1-9][0-9]*) group=(?P<group>[1-9][0-9]*) from=(?P<from>[1-9][0-9]*)"
    r" ts=(?P<ts>[0-9]+) seq=(?P<seq>[1-9][0-9]*) text=(?P<text>.*)",
    re.DOTALL,
)
NO_SUCH_UID = 9_000_000_000
NO_SUCH_GID = 9_000_000_000


def ids(*values: int) -> str:
    return ",".join(str(v) for v in values)


async def create_group(client: LineClient, line: str = "CREATEGROUP team") -> int:
    reply = await client.cmd(line)
    match = re.fullmatch(r"\+OK group_id=([1-9][0-9]*)", reply)
    assert match is not None, reply
    return int(match[1])


# -- friends --------------------------------------------------------------------


async def test_getfriends_with_no_friends_is_ok_friends_with_a_trailing_space(
    server: RunningServer,
) -> None:
    alice = await server.user()
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "


async def test_addfriend_is_mutual(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {uid_of(bob)}"
    assert await bob.cmd("GETFRIENDS") == f"+OK friends: {uid_of(alice)}"


async def test_getfriends_lists_ids_ascending_whatever_the_order_added(
    server: RunningServer,
) -> None:
    alice = await server.user()
    others = [await server.user() for _ in range(5)]
    for friend in (others[3], others[0], others[4], others[2], others[1]):
        assert await alice.cmd(f"ADDFRIEND {uid_of(friend)}") == "+OK friend added"
    expected = sorted(uid_of(o) for o in others)
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {ids(*expected)}"
    # Friends added from the other side appear in order too.
    late = await server.user()
    assert await late.cmd(f"ADDFRIEND {uid_of(alice)}") == "+OK friend added"
    expected = sorted([*expected, uid_of(late)])
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {ids(*expected)}"


async def test_addfriend_self_is_refused(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"ADDFRIEND {uid_of(alice)}") == "-ERR cannot add yourself"
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "


async def test_addfriend_unknown_user_is_no_such_user(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd(f"ADDFRIEND {NO_SUCH_UID}") == "-ERR no such user"
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "


async def test_addfriend_twice_from_either_side_is_already_friends(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "-ERR already friends"
    assert await bob.cmd(f"ADDFRIEND {uid_of(alice)}") == "-ERR already friends"
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {uid_of(bob)}"


async def test_friend_commands_reject_malformed_uids(server: RunningServer) -> None:
    alice = await server.user()
    for args, error in (
        ("", "-ERR missing argument"),
        ("abc", "-ERR bad uid"),
        ("0", "-ERR bad uid"),
        ("-3", "-ERR bad uid"),
        ("2 3", "-ERR too many arguments"),
    ):
        for command in ("ADDFRIEND", "REMOVEFRIEND"):
            line = f"{command} {args}".rstrip()
            assert await alice.cmd(line) == error, line
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "


async def test_removefriend_is_mutual_and_leaves_the_empty_form(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await bob.cmd(f"REMOVEFRIEND {uid_of(alice)}") == "+OK friend removed"
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "
    assert await bob.cmd("GETFRIENDS") == "+OK friends: "


async def test_removefriend_when_not_friends_is_not_friends(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert await alice.cmd(f"REMOVEFRIEND {uid_of(bob)}") == "-ERR not friends"
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await alice.cmd(f"REMOVEFRIEND {uid_of(bob)}") == "+OK friend removed"
    assert await alice.cmd(f"REMOVEFRIEND {uid_of(bob)}") == "-ERR not friends"
    assert await bob.cmd(f"REMOVEFRIEND {uid_of(alice)}") == "-ERR not friends"
    assert await alice.cmd(f"REMOVEFRIEND {NO_SUCH_UID}") == "-ERR not friends"
    assert await alice.cmd(f"REMOVEFRIEND {uid_of(alice)}") == "-ERR not friends"


async def test_friends_can_be_added_again_after_removal(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    for friend in (bob, carol):
        assert await alice.cmd(f"ADDFRIEND {uid_of(friend)}") == "+OK friend added"
    assert await alice.cmd(f"REMOVEFRIEND {uid_of(bob)}") == "+OK friend removed"
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {uid_of(carol)}"
    assert await bob.cmd(f"ADDFRIEND {uid_of(alice)}") == "+OK friend added"
    assert await alice.cmd("GETFRIENDS") == f"+OK friends: {ids(uid_of(bob), uid_of(carol))}"


async def test_friend_lists_are_per_user(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    assert await alice.cmd(f"ADDFRIEND {uid_of(bob)}") == "+OK friend added"
    assert await carol.cmd("GETFRIENDS") == "+OK friends: "
    other_alice = await server.client()
    assert alice.account is not None
    assert (await other_alice.login(alice.account.username, "secret1")).startswith("+OK")
    assert await other_alice.cmd("GETFRIENDS") == f"+OK friends: {uid_of(bob)}"


# -- creating groups ------------------------------------------------------------


async def test_creategroup_makes_the_creator_the_first_member(server: RunningServer) -> None:
    alice = await server.user()
    gid = await create_group(alice)
    assert await alice.cmd("GROUPS") == f"+OK groups: {gid}"
    assert await alice.cmd(f"MEMBERS {gid}") == f"+OK members: {uid_of(alice)}"


async def test_creategroup_accepts_a_name_with_or_without_a_description(
    server: RunningServer,
) -> None:
    alice = await server.user()
    created = []
    for line in (
        "CREATEGROUP team",
        "CREATEGROUP team the A team",
        "CREATEGROUP   team    spaces  inside and trailing   ",
        "CREATEGROUP 讨论组 中文描述",
        "CREATEGROUP " + "n" * 64,
        "CREATEGROUP team " + "d" * 512,
        "creategroup lower-case-command",
    ):
        gid = await create_group(alice, line)
        assert await alice.cmd(f"MEMBERS {gid}") == f"+OK members: {uid_of(alice)}"
        created.append(gid)
    assert len(set(created)) == len(created)
    assert await alice.cmd("GROUPS") == f"+OK groups: {ids(*sorted(created))}"


async def test_creategroup_rejects_bad_names_and_descriptions(server: RunningServer) -> None:
    alice = await server.user()
    for line, error in (
        ("CREATEGROUP", "-ERR missing argument"),
        ("CREATEGROUP    ", "-ERR missing argument"),
        ("CREATEGROUP " + "n" * 65, "-ERR bad group name"),
        ("CREATEGROUP team " + "d" * 513, "-ERR description too long"),
        ("CREATEGROUP bell\x07name", "-ERR bad group name"),
    ):
        assert await alice.cmd(line) == error, line
    assert await alice.cmd("GROUPS") == "+OK groups: "


async def test_groups_with_the_same_name_are_distinct(server: RunningServer) -> None:
    alice = await server.user()
    first = await create_group(alice, "CREATEGROUP dup")
    second = await create_group(alice, "CREATEGROUP dup")
    assert first != second
    assert await alice.cmd("GROUPS") == f"+OK groups: {ids(*sorted([first, second]))}"


# -- membership -----------------------------------------------------------------


async def test_joingroup_then_members_lists_everyone_ascending(server: RunningServer) -> None:
    users = [await server.user() for _ in range(4)]
    owner = users[2]
    gid = await create_group(owner)
    for member in (users[3], users[0], users[1]):
        assert await member.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    expected = f"+OK members: {ids(*sorted(uid_of(u) for u in users))}"
    for member in users:
        assert await member.cmd(f"MEMBERS {gid}") == expected


async def test_joingroup_twice_is_already_member(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await alice.cmd(f"JOINGROUP {gid}") == "-ERR already member"
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert await bob.cmd(f"JOINGROUP {gid}") == "-ERR already member"
    assert await bob.cmd(f"MEMBERS {gid}") == f"+OK members: {ids(uid_of(alice), uid_of(bob))}"


async def test_joining_or_leaving_an_unknown_group_is_no_such_group(
    server: RunningServer,
) -> None:
    alice = await server.user()
    assert await alice.cmd(f"JOINGROUP {NO_SUCH_GID}") == "-ERR no such group"
    assert await alice.cmd(f"LEAVEGROUP {NO_SUCH_GID}") == "-ERR no such group"
    assert await alice.cmd("GROUPS") == "+OK groups: "


async def test_leavegroup_removes_me_and_a_second_leave_is_not_member(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "+OK left group"
    assert await bob.cmd("GROUPS") == "+OK groups: "
    assert await alice.cmd(f"MEMBERS {gid}") == f"+OK members: {uid_of(alice)}"
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "-ERR not member"
    # Leaving is not permanent.
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert await bob.cmd("GROUPS") == f"+OK groups: {gid}"


async def test_leavegroup_by_a_never_member_is_not_member(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "-ERR not member"


async def test_groups_lists_my_groups_ascending(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    mine = [await create_group(alice, f"CREATEGROUP a{i}") for i in range(3)]
    theirs = [await create_group(bob, f"CREATEGROUP b{i}") for i in range(3)]
    assert await alice.cmd(f"JOINGROUP {theirs[2]}") == "+OK joined group"
    assert await alice.cmd(f"JOINGROUP {theirs[0]}") == "+OK joined group"
    assert await alice.cmd(f"LEAVEGROUP {mine[1]}") == "+OK left group"
    expected = sorted([mine[0], mine[2], theirs[0], theirs[2]])
    assert await alice.cmd("GROUPS") == f"+OK groups: {ids(*expected)}"
    assert await bob.cmd("GROUPS") == f"+OK groups: {ids(*theirs)}"


async def test_a_group_id_unknown_before_creation_works_once_created(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    first = await create_group(alice)
    future = first + 1
    assert await alice.cmd(f"MEMBERS {future}") == "-ERR no such group"
    assert await alice.cmd(f"SENDGROUP {future} too early") == "-ERR no such group"
    assert await bob.cmd(f"JOINGROUP {future}") == "-ERR no such group"
    assert await alice.cmd(f"HISTORY g{future}") == "-ERR no such group"
    assert await create_group(alice) == future
    assert await bob.cmd(f"JOINGROUP {future}") == "+OK joined group"
    assert await alice.cmd(f"MEMBERS {future}") == f"+OK members: {ids(uid_of(alice), uid_of(bob))}"
    assert (await alice.cmd(f"SENDGROUP {future} now")).startswith("+OK group_msg_id=")
    push = GMSG.fullmatch(await bob.read_line())
    assert push is not None and push["text"] == "now"


async def test_groups_with_no_groups_is_the_empty_form(server: RunningServer) -> None:
    alice = await server.user()
    assert await alice.cmd("GROUPS") == "+OK groups: "


async def test_group_commands_reject_malformed_group_ids(server: RunningServer) -> None:
    alice = await server.user()
    await create_group(alice)
    for args, error in (
        ("", "-ERR missing argument"),
        ("abc", "-ERR bad group_id"),
        ("0", "-ERR bad group_id"),
        ("g1", "-ERR bad group_id"),
        ("9223372036854775808", "-ERR bad group_id"),
        ("1 2", "-ERR too many arguments"),
    ):
        for command in ("JOINGROUP", "LEAVEGROUP", "MEMBERS"):
            line = f"{command} {args}".rstrip()
            assert await alice.cmd(line) == error, line


# -- who may send and list ------------------------------------------------------


async def test_only_members_may_list_members(server: RunningServer) -> None:
    alice = await server.user()
    outsider = await server.user()
    gid = await create_group(alice)
    assert await outsider.cmd(f"MEMBERS {gid}") == "-ERR not member"
    assert await outsider.cmd(f"MEMBERS {NO_SUCH_GID}") == "-ERR no such group"


async def test_only_members_may_sendgroup(server: RunningServer) -> None:
    alice = await server.user()
    outsider = await server.user()
    gid = await create_group(alice)
    assert await outsider.cmd(f"SENDGROUP {gid} let me in") == "-ERR not member"
    assert await outsider.cmd(f"SENDGROUP {NO_SUCH_GID} hello") == "-ERR no such group"
    # Nothing was stored or delivered for the refused send.
    history, done = await alice.cmd_multi(f"HISTORY g{gid}")
    assert (history, done) == ([], "+OK history_done")
    await assert_nothing_pending(alice, via=outsider)


async def test_a_member_who_left_may_no_longer_send_list_or_read_history(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert (await bob.cmd(f"SENDGROUP {gid} while inside")).startswith("+OK group_msg_id=")
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "+OK left group"
    assert await bob.cmd(f"SENDGROUP {gid} after leaving") == "-ERR not member"
    assert await bob.cmd(f"MEMBERS {gid}") == "-ERR not member"
    assert await bob.cmd(f"HISTORY g{gid}") == "-ERR not member"


async def test_group_messages_reach_current_members_only(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    carol = await server.user()
    outsider = await server.user()
    gid = await create_group(alice)
    for member in (bob, carol):
        assert await member.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    reply = await bob.cmd(f"SENDGROUP {gid} hi all")
    msg_id = int(reply.removeprefix("+OK group_msg_id="))
    for member in (alice, carol):
        match = GMSG.fullmatch(await member.read_line())
        assert match is not None
        assert int(match["id"]) == msg_id
        assert int(match["group"]) == gid
        assert int(match["from"]) == uid_of(bob)
        assert match["text"] == "hi all"
    lines, done = await outsider.cmd_multi("SYNC 0")
    assert (lines, done) == ([], "+OK sync_done seq=0")
    await assert_nothing_pending(bob, via=outsider)
    await assert_nothing_pending(outsider, via=bob)


async def test_group_messages_after_leaving_are_not_delivered(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert (await alice.cmd(f"SENDGROUP {gid} first")).startswith("+OK group_msg_id=")
    first = GMSG.fullmatch(await bob.read_line())
    assert first is not None and first["seq"] == "1"
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "+OK left group"
    assert (await alice.cmd(f"SENDGROUP {gid} second")).startswith("+OK group_msg_id=")
    lines, done = await bob.cmd_multi("SYNC 0")
    assert len(lines) == 1 and lines[0].endswith(" seq=1 text=first")
    assert done == "+OK sync_done seq=1"
    await assert_nothing_pending(bob, via=alice)


async def test_group_messages_sent_before_joining_are_not_in_my_inbox(
    server: RunningServer,
) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert (await alice.cmd(f"SENDGROUP {gid} before bob")).startswith("+OK group_msg_id=")
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert (await alice.cmd(f"SENDGROUP {gid} after bob")).startswith("+OK group_msg_id=")
    push = GMSG.fullmatch(await bob.read_line())
    assert push is not None
    assert (push["seq"], push["text"]) == ("1", "after bob")
    lines, done = await bob.cmd_multi("SYNC 0")
    assert [GMSG.fullmatch(line) is not None for line in lines] == [True]
    assert done == "+OK sync_done seq=1"


async def test_friendship_is_not_needed_to_share_a_group(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    gid = await create_group(alice)
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "
    assert (await bob.cmd(f"SENDGROUP {gid} hello stranger")).startswith("+OK group_msg_id=")
    push = GMSG.fullmatch(await alice.read_line())
    assert push is not None and push["text"] == "hello stranger"
