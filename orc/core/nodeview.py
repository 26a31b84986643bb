"""What `GET /nodes` shows of each node: pure, from the manager's state.

`LastHeartbeat` is not in the state (heartbeats are not logged): the node monitor fills it in.
"""

from __future__ import annotations

import msgspec

from orc.core.model import wire_name
from orc.core.placement import EMPTY, NANO, allocations_of
from orc.core.state import ClusterState


class Allocated(msgspec.Struct, frozen=True, rename=wire_name):
    """What the node's Scheduled and Running tasks ask for: CPU in cores, bytes otherwise."""

    cpu: float = 0.0
    memory: int = 0
    disk: int = 0


class NodeView(msgspec.Struct, frozen=True, rename=wire_name):
    name: str
    address: str
    state: str  # "up" or "down"
    drivers: tuple[str, ...]
    attrs: dict[str, str]  # what the node declares (`orc worker --attr`); {} for nothing
    cores: int
    memory: int
    disk: int
    allocated: Allocated
    task_count: int
    last_heartbeat: str | None = None
    reason: str = ""  # why it is down


def node_views(state: ClusterState) -> list[NodeView]:
    allocs = allocations_of(state)
    views = []
    for node in state.nodes.values():
        a = allocs.get(node.name, EMPTY)
        down = node.name in state.down
        views.append(
            NodeView(
                name=node.name,
                address=node.address,
                state="down" if down else "up",
                drivers=node.drivers,
                attrs=dict(node.attrs) if node.attrs else {},
                cores=node.cores,
                memory=node.memory,
                disk=node.disk,
                allocated=Allocated(a.cpu / NANO, a.memory, a.disk),
                task_count=a.tasks,
                reason=state.down.get(node.name, ""),
            )
        )
    return views
