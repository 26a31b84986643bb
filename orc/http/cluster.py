"""`GET /cluster`: who leads, every manager with its role and log position, and the etcd behind
them. Every manager answers it, a standby too; a single manager with its file log answers it
as a cluster of one (no etcd)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Response
from quart_trio import QuartTrio

from orc.ha.etcd import EtcdError
from orc.ha.registry import ClusterView
from orc.http.app import error, json_response

ClusterSource = Callable[[], Awaitable[ClusterView]]


def add_cluster_route(app: QuartTrio, view: ClusterSource) -> None:
    @app.get("/cluster")
    async def cluster() -> Response:
        try:
            found = await view()
        except EtcdError as exc:
            response = error(503, f"etcd cannot say now: {exc}; retry shortly")
            response.headers["Retry-After"] = "1"
            return response
        return json_response(found)
