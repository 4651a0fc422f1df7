"""The thinnest end-to-end path: two users chat through a real gateway."""

from __future__ import annotations

from tests.conftest import TOPOLOGIES, RunningServer

pytestmark = TOPOLOGIES


async def test_greeting_register_send_and_live_push(server: RunningServer) -> None:
    alice = await server.user()
    bob = await server.user()
    assert alice.greeting.startswith("+OK")
    assert bob.account is not None
    reply = await alice.cmd(f"SEND {bob.account.uid} hello bob")
    assert reply.startswith("+OK msg_id=")
    push = await bob.read_line()
    assert push.startswith("MSG ")
    assert push.endswith(" seq=1 text=hello bob")
