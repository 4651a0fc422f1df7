"""The push path's route lookup agrees with GetRoutes, in process and by RPC."""

from __future__ import annotations

from mpim.proto import presence_pb2
from mpim.services.presence import MemoryPresenceService
from mpim.services.routing import RouteLookup, RoutesByRpc, route_lookup


async def test_gateways_of_agrees_with_get_routes() -> None:
    presence = MemoryPresenceService()
    for uid, gateway_id, conn_id in [
        (1, "gw1", "a"),
        (1, "gw1", "b"),
        (1, "gw2", "c"),
        (2, "gw2", "d"),
    ]:
        await presence.Connect(
            presence_pb2.ConnectionRef(uid=uid, gateway_id=gateway_id, conn_id=conn_id)
        )
    await presence.Disconnect(presence_pb2.ConnectionRef(uid=2, gateway_id="gw2", conn_id="d"))

    expected = {1: {"gw1", "gw2"}}
    assert await presence.gateways_of([1, 2, 3, 3]) == expected  # 3 is asked twice
    assert await RoutesByRpc(presence).gateways_of([1, 2, 3]) == expected
    assert presence.metrics.totals() == (2, 4)


def test_a_presence_without_gateways_of_is_asked_by_rpc() -> None:
    class RpcOnly:
        async def GetRoutes(
            self, request: presence_pb2.GetRoutesRequest
        ) -> presence_pb2.GetRoutesReply:
            return presence_pb2.GetRoutesReply()

    presence = MemoryPresenceService()
    assert route_lookup(presence) is presence
    assert isinstance(route_lookup(RpcOnly()), RoutesByRpc)  # type: ignore[arg-type]
    assert isinstance(presence, RouteLookup)
