"""Presence service: which gateway connections hold each user (in memory)."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from mpim.metrics.families import CacheMetrics, count_route_lookups
from mpim.proto import common_pb2, presence_pb2

_EMPTY = common_pb2.Empty()


class MemoryPresenceService:
    """Implements mpim.proto.interfaces.PresenceService for one process.

    Routes live only as long as the process; a restart starts everyone
    offline, which is the truth since their connections died with it.
    """

    def __init__(self, metrics: CacheMetrics | None = None) -> None:
        self._routes: dict[int, set[tuple[str, str]]] = {}
        self.metrics = metrics if metrics is not None else CacheMetrics()

    async def Connect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        self._routes.setdefault(request.uid, set()).add((request.gateway_id, request.conn_id))
        return _EMPTY

    async def Disconnect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        routes = self._routes.get(request.uid)
        if routes is not None:
            routes.discard((request.gateway_id, request.conn_id))
            if not routes:
                del self._routes[request.uid]
        return _EMPTY

    async def GetRoutes(
        self, request: presence_pb2.GetRoutesRequest
    ) -> presence_pb2.GetRoutesReply:
        reply = presence_pb2.GetRoutesReply()
        for uid, routes in self._connected(request.uids):
            for gateway_id, conn_id in sorted(routes):
                reply.routes.append(
                    presence_pb2.ConnectionRef(uid=uid, gateway_id=gateway_id, conn_id=conn_id)
                )
        return reply

    async def gateways_of(self, uids: Collection[int]) -> dict[int, set[str]]:
        """See mpim.services.routing: GetRoutes without a protobuf per route."""
        return {
            uid: {gateway_id for gateway_id, _ in routes} for uid, routes in self._connected(uids)
        }

    def _connected(self, uids: Iterable[int]) -> list[tuple[int, set[tuple[str, str]]]]:
        """(uid, its (gateway_id, conn_id) routes) for each connected uid, each
        asked once; counted as route lookups."""
        wanted = dict.fromkeys(uids)
        found = [(uid, routes) for uid in wanted if (routes := self._routes.get(uid))]
        count_route_lookups(self.metrics, len(found), len(wanted) - len(found))
        return found

    async def DropGateway(self, request: presence_pb2.DropGatewayRequest) -> common_pb2.Empty:
        for uid in list(self._routes):
            routes = {r for r in self._routes[uid] if r[0] != request.gateway_id}
            if routes:
                self._routes[uid] = routes
            else:
                del self._routes[uid]
        return _EMPTY
