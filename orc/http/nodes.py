"""Routes between nodes: `POST /nodes` and `GET /nodes` on the manager; `GET /node` on a worker
(its orders come to `POST /orders`, in `orc.http.worker`)."""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from actors import ActorRef
from orc.core.messages import ListNodes, Reply
from orc.core.model import NodeInfo, wire_name
from orc.core.placement import attrs_problem
from orc.core.validation import DRIVERS, Invalid, decode_json
from orc.http.app import error, json_response
from orc.shell.monitor import Heartbeats, Register

ASK_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


_registration = msgspec.json.Decoder(NodeInfo)


def decode_registration(body: bytes) -> NodeInfo:
    """The body of `POST /nodes`: a NodeInfo, strictly."""
    r = decode_json(body, _registration, "a JSON NodeInfo (Name, Address, Drivers, ...)")
    if not _NAME.match(r.name):
        raise Invalid(
            f"Expected a name of letters, digits, '.', '_' or '-', got {r.name!r} - at $.Name"
        )
    host, _, port = r.address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"Expected host:port, got {r.address!r} - at $.Address")
    for i, driver in enumerate(r.drivers):
        if driver not in DRIVERS:
            raise Invalid(
                f"Expected a driver one of {', '.join(DRIVERS)}, got {driver!r} - at $.Drivers[{i}]"
            )
    for field in ("cores", "memory", "disk"):
        if getattr(r, field) < 0:
            raise Invalid(f"Expected {wire_name(field)} >= 0 - at $.{wire_name(field)}")
    if r.attrs is not None:
        if problem := attrs_problem(r.attrs):
            raise Invalid(f"Expected node attributes: {problem} - at $.Attrs")
        if not r.attrs:  # {} and no Attrs are one thing: a heartbeat must not seem a change
            r = msgspec.structs.replace(r, attrs=None)
    return r


def add_manager_node_routes(app: QuartTrio, manager: ActorRef, monitor: ActorRef | None) -> None:
    """`GET /nodes` always; `POST /nodes` (registration and heartbeat) with a monitor."""

    @app.get("/nodes")
    async def list_nodes() -> Response:
        views = await manager.ask(ListNodes(), timeout=ASK_TIMEOUT)
        beats: dict[str, str] = {}
        if monitor is not None and not monitor.stopped:  # a standby manager's runs nowhere
            beats = await monitor.ask(Heartbeats(), timeout=ASK_TIMEOUT)  # type: ignore[assignment]
        return json_response(
            [
                msgspec.structs.replace(v, last_heartbeat=beats.get(v.name))
                for v in views  # type: ignore[attr-defined]
            ]
        )

    if monitor is None:
        return

    @app.post("/nodes")
    async def register() -> Response:
        body = await request.get_data(cache=False)
        assert isinstance(body, bytes)
        info = decode_registration(body)
        reply = await monitor.ask(Register(info), timeout=ASK_TIMEOUT)
        assert isinstance(reply, Reply)
        if reply.status >= 400:
            return error(reply.status, reply.message)
        return json_response({"Name": info.name, "Message": reply.message})


def add_worker_node_routes(app: QuartTrio, info: Callable[[], NodeInfo]) -> None:
    @app.get("/node")
    async def node() -> Response:
        return json_response(info())
