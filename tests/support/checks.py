"""Small protocol checks shared by the integration suites."""

from __future__ import annotations

import asyncio
import time

from tests.support.lineclient import LineClient


def uid_of(client: LineClient) -> int:
    assert client.account is not None
    return client.account.uid


async def wait_offline(observer: LineClient, uid: int, timeout: float = 10.0) -> None:
    """Poll STATUS until the server has noticed ``uid``'s connections are gone."""
    deadline = time.monotonic() + timeout
    reply = ""
    while time.monotonic() < deadline:
        reply = await observer.cmd(f"STATUS {uid}")
        if reply == f"+OK uid={uid} online=0":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"uid {uid} still online: {reply}")


async def assert_nothing_pending(recipient: LineClient, via: LineClient) -> None:
    """No push is on its way to ``recipient``: a fresh message from ``via`` is the next
    line it gets (pushes arrive in seq order, so anything earlier would come first)."""
    marker = f"marker {time.monotonic_ns()}"
    reply = await via.cmd(f"SEND {uid_of(recipient)} {marker}")
    assert reply.startswith("+OK msg_id="), reply
    line = await recipient.read_line()
    assert line.startswith("MSG ") and line.endswith(f" text={marker}"), line
