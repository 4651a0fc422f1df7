"""Thousands of mutated protocol lines at a live gateway: every line is answered
exactly once (blank ones never), nothing crashes, other users are unaffected."""

from __future__ import annotations

import random

from tests.conftest import RunningServer

SEEDS = [
    b"REGISTER fuzzer secret1",
    b"LOGIN fuzzer secret1",
    b"SEND 1 hello world",
    b"@cid=abc SEND 2 hi",
    b"SENDGROUP 1 hey",
    b"HISTORY g1 10 99",
    b"SYNC 0",
    b"STATUS 1",
    b"CREATEGROUP team the best",
    b"ADDFRIEND 2",
    b"MEMBERS 1",
    b"PING",
    b"AUTH abcdefghijklmnopqrstuvwxyz",
]
NOISE = [
    b"\x00",
    b"\xff",
    b"\xc3",
    b" ",
    b"  ",
    b"\r",
    b"9" * 25,
    b"-1",
    b"@",
    b"=",
    b"\t",
    b"\xe2\x82",
]


def mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        pos = rng.randint(0, len(data))
        if choice < 0.3:
            data[pos:pos] = rng.choice(NOISE)
        elif choice < 0.5 and data:
            del data[pos : pos + rng.randint(1, 5)]
        elif choice < 0.7 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data[pos:pos] = bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 8)))
    return bytes(data).replace(b"\n", b"")


def expected_replies(line: bytes) -> int:
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return 1
    return 0 if not text.strip(" ") else 1


async def test_mutated_lines_each_get_one_reply_and_nobody_else_notices(
    server: RunningServer,
) -> None:
    rng = random.Random(20261128)
    lines = [mutate(rng, rng.choice(SEEDS)) for _ in range(3000)]
    # QUIT ends a connection by design; keep the accounting about errors.
    lines = [line for line in lines if line.strip().upper() != b"QUIT"]
    bystander = await server.user()
    other = await server.user()
    assert other.account is not None
    fuzzer = await server.client()
    await fuzzer.send_raw(b"\n".join(lines) + b"\nPING\n")
    wanted = sum(expected_replies(line) for line in lines) + 1
    statuses: list[str] = []
    while len(statuses) < wanted:
        line = await fuzzer.read_line()
        if line[:1] in ("+", "-"):
            statuses.append(line)
    assert statuses[-1] == "+OK pong"
    assert not any(s == "-ERR internal error" for s in statuses)
    # The fuzzer may have messaged them (uids 1 and 2): skip those pushes.
    await bystander.send(f"SEND {other.account.uid} still fine")
    _, status = await bystander.read_multi()
    assert status.startswith("+OK msg_id=")
    while not (await other.read_line()).endswith("text=still fine"):
        pass
