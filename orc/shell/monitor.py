"""The NodeMonitor actor: who registered, who was heard from lately, who went silent.

Last-seen times live here, in memory, not in the log: a heartbeat changes nothing durable. A
timer (trio's clock, so MockClock drives it in tests) finds each node silent for ORC_NODE_TTL
and tells the manager, which logs `NodeDown` and fails the node's tasks. A node heard from
again (it registers, or its update stream answers) joins again and is reconciled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import trio

from actors import Actor, ActorRef, Mailbox
from orc.core.messages import AttachProxy, Join, ListNodes, NodeSilent, Reply
from orc.core.model import NodeInfo
from orc.nodes.base import MoveTo, Resync, Seen

log = logging.getLogger("orc.monitor")

ASK_TIMEOUT = 10.0


class Register(msgspec.Struct, frozen=True):
    """A worker registers (or heartbeats) with what it offers. Answered with a `Reply`."""

    node: NodeInfo


class Heartbeats(msgspec.Struct, frozen=True):
    """Answered with {node name: RFC 3339 time it was last heard from}."""


class NodeMonitor(Actor):
    def __init__(
        self,
        manager: ActorRef,
        make_proxy: Callable[[NodeInfo], ActorRef],
        ttl: float,
        wall: Callable[[], str],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.manager = manager
        self.make_proxy = make_proxy
        self.ttl = ttl
        self.wall = wall
        self.clock = clock
        self.infos: dict[str, NodeInfo] = {}
        self.proxies: dict[str, ActorRef] = {}
        self.last_seen: dict[str, float] = {}
        self.last_wall: dict[str, str] = {}
        self.up: set[str] = set()

    async def started(self) -> None:
        """Nodes the log knows: an up one gets a TTL from now to be heard from, and a proxy
        at once, so its updates resume without waiting for its next registration."""
        views = await self.manager.ask(ListNodes(), timeout=ASK_TIMEOUT)
        for view in views:  # type: ignore[attr-defined]
            info = NodeInfo(
                view.name,
                view.address,
                view.drivers,
                view.cores,
                view.memory,
                view.disk,
                view.attrs or None,  # as the node registers them: None for none
            )
            self.infos[info.name] = info
            if view.state == "up":
                self.up.add(info.name)
                self.last_seen[info.name] = self.clock()
                await self._proxy(info)

    async def run(self, mailbox: Mailbox) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch)  # its first look comes a tenth of a TTL later
            await super().run(mailbox)

    async def handle(self, message: object) -> object:
        match message:
            case Register(info):
                return await self._register(info)
            case Seen(node):
                if node in self.infos:
                    await self._heard(self.infos[node])
            case Heartbeats():
                return dict(self.last_wall)
            case _:
                raise TypeError(f"node monitor: unexpected message {message!r}")
        return None

    async def _register(self, info: NodeInfo) -> Reply:
        known = self.infos.get(info.name)
        if known is not None and known.address != info.address and info.name in self.up:
            return Reply(
                409,
                message=f"node {info.name} is registered at {known.address} and is up;"
                f" {info.address} cannot take its name until it has been silent for"
                f" {self.ttl:g} s (or choose another name)",
            )
        if known is not None and known.address != info.address and info.name in self.proxies:
            await self.proxies[info.name].tell(MoveTo(info.address))
        return await self._heard(info)

    async def _heard(self, info: NodeInfo) -> Reply:
        name = info.name
        self.last_seen[name] = self.clock()
        self.last_wall[name] = self.wall()
        changed = self.infos.get(name) != info
        back = name not in self.up
        self.infos[name] = info
        if changed or back:
            reply = await self.manager.ask(Join(info, self.wall()), timeout=ASK_TIMEOUT)
            if isinstance(reply, Reply) and reply.status >= 400:
                return reply  # the log cannot be written: the node tries again
            if back:
                log.warning("node %s (%s) is up", name, info.address)
        self.up.add(name)
        proxy = self.proxies.get(name)
        if proxy is None:
            await self._proxy(info)
        elif back:
            await proxy.tell(Resync())
        return Reply(200, message=f"node {name} registered")

    async def _proxy(self, info: NodeInfo) -> None:
        if info.name in self.proxies:
            return
        proxy = self.make_proxy(info)
        self.proxies[info.name] = proxy
        await self.manager.ask(AttachProxy(info.name, proxy), timeout=ASK_TIMEOUT)

    async def _watch(self) -> None:
        """Mark down every node silent for the TTL, checking ten times per TTL."""
        while True:
            await trio.sleep(self.ttl / 10)
            now = self.clock()
            for name in sorted(self.up):
                silent = now - self.last_seen.get(name, now)
                if silent > self.ttl:
                    self.up.discard(name)
                    reason = f"no heartbeat for {self.ttl:.1f} s"
                    log.warning("node %s is down: %s", name, reason)
                    await self.manager.tell(NodeSilent(name, reason, self.wall()))
