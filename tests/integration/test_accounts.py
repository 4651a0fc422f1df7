"""Accounts over real TCP: REGISTER, LOGIN, AUTH, LOGOUT, the login check,
login throttling and token expiry (protocol.md "Identity" and "Commands")."""

from __future__ import annotations

import asyncio
import re
import time

from tests.conftest import TOPOLOGIES, RunningServer, ServerFactory
from tests.support.lineclient import LineClient

pytestmark = TOPOLOGIES

LOGIN_REPLY = re.compile(r"\+OK uid=(?P<uid>[1-9][0-9]*) token=(?P<token>[^ ]+)")


def login_fields(reply: str) -> tuple[int, str]:
    """(uid, token) from ``+OK uid=<uid> token=<token>``; fails on anything else."""
    match = LOGIN_REPLY.fullmatch(reply)
    assert match is not None, reply
    return int(match["uid"]), match["token"]


async def assert_logged_in(client: LineClient) -> None:
    """A command that needs a login succeeds on this connection."""
    assert (await client.cmd("GETFRIENDS")).startswith("+OK friends:")


async def assert_logged_out(client: LineClient) -> None:
    assert await client.cmd("GETFRIENDS") == "-ERR not login"


# -- REGISTER -------------------------------------------------------------------


async def test_register_replies_uid_and_token_and_logs_the_connection_in(
    server: RunningServer,
) -> None:
    client = await server.client()
    reply = await client.cmd("REGISTER alice secret1")
    uid, token = login_fields(reply)
    assert 1 <= uid <= 2**63 - 1
    assert token
    await assert_logged_in(client)


async def test_each_registration_gets_a_distinct_uid_and_token(server: RunningServer) -> None:
    seen_uids: set[int] = set()
    seen_tokens: set[str] = set()
    for name in ("u_one", "u_two", "u_three", "u_four"):
        client = await server.client()
        uid, token = login_fields(await client.cmd(f"REGISTER {name} secret1"))
        seen_uids.add(uid)
        seen_tokens.add(token)
    assert len(seen_uids) == 4
    assert len(seen_tokens) == 4


async def test_register_taken_name_is_user_exists_ignoring_ascii_case(
    server: RunningServer,
) -> None:
    first = await server.client()
    login_fields(await first.cmd("REGISTER Alice secret1"))
    for variant in ("Alice", "alice", "ALICE", "aLiCe"):
        other = await server.client()
        assert await other.cmd(f"REGISTER {variant} another1") == "-ERR user exists"
        await assert_logged_out(other)


async def test_username_is_one_account_ignoring_case_at_login(server: RunningServer) -> None:
    first = await server.client()
    uid, _ = login_fields(await first.cmd("REGISTER Alice secret1"))
    for variant in ("Alice", "alice", "ALICE"):
        other = await server.client()
        login_uid, _ = login_fields(await other.login(variant, "secret1"))
        assert login_uid == uid


async def test_register_accepts_valid_usernames(server: RunningServer) -> None:
    for name in ("a", "Z", "x" * 32, "A_b.c-9", "...", "-_-", "0123456789"):
        client = await server.client()
        login_fields(await client.cmd(f"REGISTER {name} secret1"))


async def test_register_rejects_bad_usernames(server: RunningServer) -> None:
    client = await server.client()
    for name in (
        "x" * 33,
        "a!b",
        "al@ce",
        "a/b",
        "a:b",
        "a,b",
        "é",
        "\uff41lice",  # full-width a
        "a\tb",
        "a+b",
    ):
        assert await client.cmd(f"REGISTER {name} secret1") == "-ERR bad username", name
    await assert_logged_out(client)


async def test_register_accepts_passwords_of_6_to_128_characters(server: RunningServer) -> None:
    for i, password in enumerate(["123456", "p" * 128, "é" * 6, "!@#$%^&*()"]):
        client = await server.client()
        uid, _ = login_fields(await client.cmd(f"REGISTER pw_user{i} {password}"))
        other = await server.client()
        login_uid, _ = login_fields(await other.login(f"pw_user{i}", password))
        assert login_uid == uid


async def test_register_rejects_passwords_outside_6_to_128_characters(
    server: RunningServer,
) -> None:
    client = await server.client()
    for password in ("12345", "x", "p" * 129):
        assert await client.cmd(f"REGISTER pw_user {password}") == "-ERR bad password"
    await assert_logged_out(client)
    assert await client.login("pw_user", "12345") == "-ERR auth failed"


async def test_register_password_with_a_space_is_refused_and_creates_nothing(
    server: RunningServer,
) -> None:
    client = await server.client()
    # A space separates arguments, so the password would be "abc" + an extra argument.
    assert await client.cmd("REGISTER spacey abc def123") == "-ERR too many arguments"
    assert await client.cmd("LOGIN spacey abc def123") == "-ERR too many arguments"
    assert await client.login("spacey", "abc") == "-ERR auth failed"
    # The name is still free.
    login_fields(await client.cmd("REGISTER spacey secret1"))


async def test_account_commands_with_missing_arguments_say_so(server: RunningServer) -> None:
    client = await server.client()
    for line in ("REGISTER", "REGISTER alice", "LOGIN", "LOGIN alice", "AUTH"):
        assert await client.cmd(line) == "-ERR missing argument", line


async def test_password_is_stored_only_as_a_slow_salted_hash(server: RunningServer) -> None:
    password = "Pl41nTextCanary_xyzzy"
    client = await server.client()
    login_fields(await client.cmd(f"REGISTER hashme {password}"))
    other = await server.client()
    login_fields(await other.cmd(f"REGISTER hashme2 {password}"))
    # Everything the server stored: database files and WAL, or (cluster) every
    # row in MariaDB and every value in Redis.
    blobs = await server.stored_bytes()
    assert password.encode() not in blobs
    hashes = re.findall(rb"\$(?:argon2id|2[aby])\$[!-~]{20,}", blobs)
    assert len(set(hashes)) >= 2, "expected two differently salted argon2id/bcrypt hashes"


# -- LOGIN ----------------------------------------------------------------------


async def test_login_returns_same_uid_and_a_fresh_token(server: RunningServer) -> None:
    first = await server.client()
    uid, token = login_fields(await first.cmd("REGISTER bob secret1"))
    second = await server.client()
    login_uid, login_token = login_fields(await second.login("bob", "secret1"))
    assert login_uid == uid
    assert login_token != token
    await assert_logged_in(second)


async def test_login_failure_is_the_same_auth_failed_for_unknown_user_and_wrong_password(
    server: RunningServer,
) -> None:
    await server.user("carol", "secret1")
    client = await server.client()
    wrong_password = await client.login("carol", "wrong-password")
    unknown_user = await client.login("nobody_here", "secret1")
    malformed_user = await client.login("bad!name", "secret1")
    assert wrong_password == unknown_user == malformed_user == "-ERR auth failed"
    await assert_logged_out(client)


async def test_failed_login_keeps_an_existing_login_or_leaves_it_logged_out(
    server: RunningServer,
) -> None:
    client = await server.client()
    assert await client.login("dave", "secret1") == "-ERR auth failed"
    await assert_logged_out(client)
    uid, _ = login_fields(await client.cmd("REGISTER dave secret1"))
    # Logged in, a failed LOGIN or AUTH leaves the session as it was.
    assert await client.login("dave", "wrong-password") == "-ERR auth failed"
    assert await client.cmd("AUTH abcdefghijklmnopqrstuvwxyz") == "-ERR auth failed"
    await assert_logged_in(client)
    assert await client.cmd(f"STATUS {uid}") == f"+OK uid={uid} online=1"


# -- AUTH and LOGOUT ------------------------------------------------------------


async def test_auth_with_a_register_token_on_a_new_connection_resumes_the_session(
    server: RunningServer,
) -> None:
    first = await server.client()
    uid, token = login_fields(await first.cmd("REGISTER erin secret1"))
    await first.close()
    second = await server.client()
    assert await second.cmd(f"AUTH {token}") == f"+OK uid={uid}"
    await assert_logged_in(second)


async def test_auth_with_a_login_token_works_while_the_login_connection_is_open(
    server: RunningServer,
) -> None:
    await server.user("frank", "secret1")
    first = await server.client()
    uid, token = login_fields(await first.login("frank", "secret1"))
    for _ in range(2):
        other = await server.client()
        assert await other.cmd(f"AUTH {token}") == f"+OK uid={uid}"
        await assert_logged_in(other)


async def test_auth_with_an_unknown_token_fails(server: RunningServer) -> None:
    await server.user()
    client = await server.client()
    for token in (
        "x",
        "0" * 43,
        "not-a-real-token-but-looks-fine-abcdefghijklm",
        "é" * 20,
        "a" * 1000,
    ):
        assert await client.cmd(f"AUTH {token}") == "-ERR auth failed", token
    await assert_logged_out(client)


async def test_logout_replies_and_leaves_the_connection_open_but_logged_out(
    server: RunningServer,
) -> None:
    client = await server.user()
    assert await client.cmd("LOGOUT") == "+OK logout success"
    await assert_logged_out(client)
    assert await client.cmd("PING") == "+OK pong"
    assert client.account is not None
    login_fields(await client.login(client.account.username, client.account.password))
    await assert_logged_in(client)


async def test_auth_with_a_token_revoked_by_logout_fails(server: RunningServer) -> None:
    client = await server.client()
    _, token = login_fields(await client.cmd("REGISTER gina secret1"))
    assert await client.cmd("LOGOUT") == "+OK logout success"
    other = await server.client()
    assert await other.cmd(f"AUTH {token}") == "-ERR auth failed"
    # ... and on the connection that logged out too.
    assert await client.cmd(f"AUTH {token}") == "-ERR auth failed"


async def test_logout_revokes_the_token_this_connection_authenticated_with(
    server: RunningServer,
) -> None:
    await server.user("hank", "secret1")
    issuer = await server.client()
    _, token = login_fields(await issuer.login("hank", "secret1"))
    resumed = await server.client()
    assert (await resumed.cmd(f"AUTH {token}")).startswith("+OK uid=")
    assert await resumed.cmd("LOGOUT") == "+OK logout success"
    fresh = await server.client()
    assert await fresh.cmd(f"AUTH {token}") == "-ERR auth failed"


async def test_a_token_auth_has_cached_is_refused_at_once_after_logout(
    server: RunningServer,
) -> None:
    """AUTH is served from the cache (Redis in the cluster); LOGOUT still wins
    at once, on every connection and, in the cluster, on both gateways."""
    issuer = await server.client()
    uid, token = login_fields(await issuer.cmd("REGISTER olga secret1"))
    resumed = [await server.client() for _ in range(2)]
    for client in resumed:
        for _ in range(3):
            assert await client.cmd(f"AUTH {token}") == f"+OK uid={uid}"
    assert await issuer.cmd("LOGOUT") == "+OK logout success"
    for client in [*resumed, await server.client(), await server.client()]:
        assert await client.cmd(f"AUTH {token}") == "-ERR auth failed"


async def test_logout_revokes_only_this_connections_token(server: RunningServer) -> None:
    phone = await server.client()
    uid, phone_token = login_fields(await phone.cmd("REGISTER ivy secret1"))
    laptop = await server.client()
    _, laptop_token = login_fields(await laptop.login("ivy", "secret1"))
    assert await phone.cmd("LOGOUT") == "+OK logout success"
    await assert_logged_in(laptop)
    other = await server.client()
    assert await other.cmd(f"AUTH {laptop_token}") == f"+OK uid={uid}"
    assert await other.cmd(f"AUTH {phone_token}") == "-ERR auth failed"


# -- the login check ------------------------------------------------------------

NEEDS_LOGIN = [
    "LOGOUT",
    "SEND 1 hello",
    "SEND abc",
    "@cid=c1 SEND 1 hello",
    "PULL",
    "ADDFRIEND 1",
    "REMOVEFRIEND 1",
    "GETFRIENDS",
    "CREATEGROUP team",
    "JOINGROUP 1",
    "LEAVEGROUP 1",
    "SENDGROUP 1 hello",
    "@cid=c2 SENDGROUP 1 hello",
    "GROUPS",
    "MEMBERS 1",
    "SYNC 0",
    "HISTORY 1",
    "HISTORY g1 10 5",
    "STATUS 1",
    "send 1 lower case",
]


async def test_commands_before_login_get_not_login(server: RunningServer) -> None:
    await server.user()  # uid 1 exists, so only the login check can refuse
    client = await server.client()
    for line in NEEDS_LOGIN:
        assert await client.cmd(line) == "-ERR not login", line
    assert await client.cmd("PING") == "+OK pong"


async def test_commands_after_logout_get_not_login(server: RunningServer) -> None:
    client = await server.user()
    assert await client.cmd("LOGOUT") == "+OK logout success"
    for line in NEEDS_LOGIN:
        assert await client.cmd(line) == "-ERR not login", line


async def test_register_login_auth_ping_and_quit_work_before_login(
    server: RunningServer,
) -> None:
    client = await server.client()
    assert await client.cmd("PING") == "+OK pong"
    assert await client.login("nobody", "secret1") == "-ERR auth failed"
    assert await client.cmd("AUTH abcdefghijklmnopqrstuvwxyz") == "-ERR auth failed"
    login_fields(await client.cmd("REGISTER jack secret1"))
    other = await server.client()
    login_fields(await other.login("jack", "secret1"))
    quitter = await server.client()
    assert await quitter.cmd("QUIT") == "+OK bye"
    assert await quitter.expect_closed() == []


# -- login throttling -----------------------------------------------------------


async def test_repeated_login_failures_lock_the_name_even_for_the_right_password(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(
        security={"login_failures_allowed": 3, "login_lockout_seconds": 30}
    )
    owner = await server.client()
    uid, owner_token = login_fields(await owner.cmd("REGISTER kate secret1"))
    await server.user("liam", "secret1")

    attacker = await server.client()
    for _ in range(3):
        assert await attacker.login("kate", "wrong-pass") == "-ERR auth failed"
    assert await attacker.login("kate", "wrong-pass") == "-ERR too many login attempts"
    assert await attacker.login("kate", "secret1") == "-ERR too many login attempts"
    assert await attacker.login("KATE", "secret1") == "-ERR too many login attempts"
    victim = await server.client()
    assert await victim.login("kate", "secret1") == "-ERR too many login attempts"
    await assert_logged_out(victim)

    # Another name is unaffected, and the locked account's live session goes on.
    other = await server.client()
    login_fields(await other.login("liam", "secret1"))
    await assert_logged_in(owner)
    # The lock guards password guessing only: a token issued before still resumes.
    assert await (await server.client()).cmd(f"AUTH {owner_token}") == f"+OK uid={uid}"


async def test_a_successful_login_resets_the_failure_count(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(
        security={"login_failures_allowed": 3, "login_lockout_seconds": 30}
    )
    await server.user("mia", "secret1")
    client = await server.client()
    for _ in range(3):
        for _ in range(2):
            assert await client.login("mia", "nope-nope") == "-ERR auth failed"
        login_fields(await client.login("mia", "secret1"))


async def test_failures_for_unknown_names_are_throttled_too(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(
        security={"login_failures_allowed": 3, "login_lockout_seconds": 30}
    )
    client = await server.client()
    for _ in range(3):
        assert await client.login("ghost", "secret1") == "-ERR auth failed"
    assert await client.login("ghost", "secret1") == "-ERR too many login attempts"
    assert await client.login("ghost2", "secret1") == "-ERR auth failed"


# -- token expiry ---------------------------------------------------------------


async def test_tokens_expire_after_the_configured_ttl(server_factory: ServerFactory) -> None:
    server = await server_factory(security={"token_ttl_seconds": 1})
    client = await server.client()
    uid, token = login_fields(await client.cmd("REGISTER nina secret1"))
    probe = await server.client()
    issued = time.monotonic()
    assert await probe.cmd(f"AUTH {token}") == f"+OK uid={uid}"

    deadline = issued + 5.0
    reply = ""
    while time.monotonic() < deadline:
        reply = await probe.cmd(f"AUTH {token}")
        if reply == "-ERR auth failed":
            break
        assert reply == f"+OK uid={uid}", reply
        await asyncio.sleep(0.05)
    assert reply == "-ERR auth failed", "token still valid 5 s after a 1 s TTL"
    assert time.monotonic() - issued >= 0.5, "token expired long before its TTL"

    # LOGIN still works and issues a new, valid token.
    _, new_token = login_fields(await client.login("nina", "secret1"))
    assert await (await server.client()).cmd(f"AUTH {new_token}") == f"+OK uid={uid}"
