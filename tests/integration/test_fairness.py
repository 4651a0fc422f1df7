"""One client streaming cheap lines must not hold up everyone else.

Blank lines, unknown commands and undecodable lines are answered without an
await. Run all in one go, a stream of them held the event loop for as long
as it went on: uvloop reads a busy socket many times in one loop pass, and
the server ran each chunk's lines before it looked at any other connection.
So these run against ``mpim up`` as a user runs it (its own process,
uvloop), with the stream from a process of its own, which sends as fast as
the kernel takes the bytes whatever the server is doing.
"""

from __future__ import annotations

import asyncio
import re
import sys

import pytest

from tests.support.checks import uid_of
from tests.support.lineclient import LineClient
from tests.support.process import MpimProcess

# Sends 64 KiB of one line over and over (over WebSocket: of one masked text
# frame per line), reading what comes back, until it is killed or its time is
# up; says "streaming" once it is under way.
_STREAMER = """
import base64, os, socket, sys, threading, time
port, line, seconds, kind = sys.argv[1:]
sock = socket.create_connection(("127.0.0.1", int(port)))
line, deadline = bytes.fromhex(line), time.monotonic() + float(seconds)
if kind == "ws":
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUpgrade: websocket\\r\\n"
        f"Connection: Upgrade\\r\\nSec-WebSocket-Key: {key}\\r\\n"
        "Sec-WebSocket-Version: 13\\r\\n\\r\\n".encode()
    )
    answer = b""
    while b"\\r\\n\\r\\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    payload = line.rstrip(b"\\n")
    line = bytes([0x81, 0x80 | len(payload)]) + bytes(4) + payload  # mask 0: as sent
chunk = line * (65536 // len(line))
def read():
    while sock.recv(1 << 20):
        pass
threading.Thread(target=read, daemon=True).start()
sent = 0
while time.monotonic() < deadline:
    sock.sendall(chunk)
    sent += 1
    if sent == 4:
        print("streaming", flush=True)
"""
STREAM_SECONDS = 30.0


async def stream_lines(
    proc: MpimProcess, line: bytes, transport: str
) -> asyncio.subprocess.Process:
    """Start the streamer; returns once it has sent its first chunks."""
    port = proc.http_port if transport == "ws" else proc.port
    assert port is not None
    streamer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STREAMER,
        str(port),
        line.hex(),
        str(STREAM_SECONDS),
        transport,
        stdout=asyncio.subprocess.PIPE,
    )
    assert streamer.stdout is not None
    assert await asyncio.wait_for(streamer.stdout.readline(), 30) == b"streaming\n"
    return streamer


@pytest.mark.parametrize(
    ("transport", "line"),
    [
        ("tcp", b"\n"),
        ("tcp", b"X\n"),
        ("tcp", b"\xff\n"),
        ("ws", b"X\n"),  # one line a frame
    ],
    ids=["blank lines", "unknown commands", "invalid utf-8", "websocket frames"],
)
async def test_a_client_streaming_cheap_lines_does_not_hold_up_other_users(
    process: MpimProcess, transport: str, line: bytes
) -> None:
    alice, bob = [await LineClient.connect(process.host, process.port) for _ in range(2)]
    await alice.register()
    await bob.register()
    streamer = await stream_lines(process, line, transport)
    try:
        # Twenty rounds within the stream: served between its reads, not once
        # in a while (before a turn per 64 frames, a WebSocket stream let
        # another user through only every 1.6 s, and these took 80 s).
        for i in range(20):
            fresh = await LineClient.connect(process.host, process.port)
            assert await fresh.cmd("PING", timeout=STREAM_SECONDS) == "+OK pong"
            reply = await alice.cmd(f"SEND {uid_of(bob)} while streaming {i}", STREAM_SECONDS)
            assert re.fullmatch(r"\+OK msg_id=[0-9]+", reply), reply
            pushed = await bob.read_line(timeout=STREAM_SECONDS)
            assert pushed.endswith(f" text=while streaming {i}")
            # Answered while the stream still ran, not once it was over.
            assert streamer.returncode is None
            await fresh.close()
    finally:
        if streamer.returncode is None:
            streamer.kill()
        await streamer.wait()
        await alice.close()
        await bob.close()
