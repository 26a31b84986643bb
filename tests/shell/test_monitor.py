"""NodeMonitor's TTL logic on trio's MockClock: silent for ORC_NODE_TTL means down, once;
heard from again means up (joined again, its proxy told to reconcile)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import Actor, ActorRef, Supervisor
from orc.core.messages import AttachProxy, Join, ListNodes, NodeSilent
from orc.core.model import NodeInfo
from orc.nodes.base import Resync, Seen
from orc.shell.monitor import Heartbeats, NodeMonitor, Register

TTL = 10.0
W1 = NodeInfo(name="w1", address="127.0.0.1:1", drivers=("process",))
W2 = NodeInfo(name="w2", address="127.0.0.1:2", drivers=("process",))


class Recorder(Actor):
    """Stands in for the manager and a proxy: answers what the monitor asks, keeps the rest."""

    def __init__(self, seen: list[tuple[float, object]]) -> None:
        self.seen = seen

    async def handle(self, message: object) -> object:
        self.seen.append((trio.current_time(), message))
        if isinstance(message, ListNodes):
            return []
        return None


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_silent_node_is_down_after_the_ttl_and_back_when_heard(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, object]] = []
    proxy_seen: list[tuple[float, object]] = []
    sup = Supervisor("t")
    manager = sup.add("manager", lambda: Recorder(seen))
    proxy = sup.add("proxy", lambda: Recorder(proxy_seen))
    made: list[ActorRef] = []

    def make_proxy(info: NodeInfo) -> ActorRef:
        made.append(proxy)
        return proxy

    monitor = sup.add("monitor", lambda: NodeMonitor(manager, make_proxy, TTL, lambda: "T"))
    nursery.start_soon(sup.run)
    start = trio.current_time()
    assert (await monitor.ask(Register(W1))).status == 200  # type: ignore[attr-defined]
    assert (await monitor.ask(Register(W2))).status == 200  # type: ignore[attr-defined]
    assert len(made) == 2
    assert [type(m) for _, m in seen] == [ListNodes, Join, AttachProxy, Join, AttachProxy]

    # w2 heartbeats every TTL/3; w1 says nothing more.
    async def heartbeat() -> None:
        while True:
            await trio.sleep(TTL / 3)
            await monitor.tell(Register(W2))

    with trio.move_on_after(3 * TTL):
        nursery.start_soon(heartbeat)
        await trio.sleep_forever()
    silent = [(t, m) for t, m in seen if isinstance(m, NodeSilent)]
    assert [m.node for _, m in silent] == ["w1"]  # once, and only w1
    t, message = silent[0]
    assert TTL < t - start <= TTL * 1.1 + 1e-9
    assert message.reason == "no heartbeat for 10.0 s"
    # Another address may not take w2's name while it is up; w1's is free now it is down.
    taken = await monitor.ask(Register(NodeInfo("w2", "10.0.0.9:1", ("process",))))
    assert taken.status == 409  # type: ignore[attr-defined]

    # w1's stream answers again: it joins again and its proxy reconciles.
    del seen[:]
    await monitor.tell(Seen("w1"))
    await monitor.ask(Heartbeats())
    assert [type(m) for _, m in seen] == [Join]
    assert any(isinstance(m, Resync) for _, m in proxy_seen)
    beats = await monitor.ask(Heartbeats())
    assert set(beats) == {"w1", "w2"}  # type: ignore[arg-type]
    nursery.cancel_scope.cancel()
