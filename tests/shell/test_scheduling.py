"""The Scheduler actor freeing capacity when tasks end, and placement through a running manager
(the pure policies are tested in tests/core/test_placement.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from actors import Actor, Supervisor
from orc.config import ConfigError, load
from orc.core.messages import NodesChanged, Place, Schedule, TasksEnded, TasksPlaced
from orc.shell.scheduler import Scheduler
from orc.shell.stats import capacity
from tests.conftest import RunningCluster, wait_for_state
from tests.core.test_placement import T0, GiB, node, task

# -- ORC_SCHEDULER ----------------------------------------------------------------------------


def test_orc_scheduler_setting(tmp_path: Path) -> None:
    none = tmp_path / "none.env"
    assert load({}, none).scheduler == "epvm"
    assert load({"ORC_SCHEDULER": "fit"}, none).scheduler == "fit"
    with pytest.raises(ConfigError, match=r"ORC_SCHEDULER='best'.*roundrobin, epvm, fit"):
        load({"ORC_SCHEDULER": "best"}, none)


# -- the Scheduler actor ----------------------------------------------------------------------


class Inbox(Actor):
    """Stands in for the manager: keeps every placement the scheduler sends."""

    def __init__(self, got: trio.MemorySendChannel[Place]) -> None:
        self.got = got

    async def handle(self, message: object) -> object:
        assert isinstance(message, Place)
        await self.got.send(message)
        return None


@asynccontextmanager
async def scheduler(policy: str) -> AsyncIterator[tuple[object, trio.MemoryReceiveChannel]]:
    send, receive = trio.open_memory_channel[Place](100)
    sup = Supervisor("test")
    inbox = sup.add("manager", lambda: Inbox(send))
    ref = sup.add("scheduler", lambda: Scheduler(lambda: inbox, lambda: T0, policy))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        yield ref, receive
        nursery.cancel_scope.cancel()


async def test_a_waiting_task_is_placed_when_a_task_ends() -> None:
    async with scheduler("epvm") as (ref, placements):
        await ref.tell(NodesChanged((node("w1", memory=GiB),)))
        big = task("big", memory=GiB)
        await ref.tell(Schedule((big, task("next", memory=GiB))))
        assert await placements.receive() == Place("big", "w1", "", T0)
        assert await placements.receive() == Place(
            "next", "", "1 node: 1 lacks memory (need 1 GiB, most free 0 B)", T0
        )
        # The manager confirms the placement, then the task ends: capacity is back.
        await ref.tell(TasksPlaced((msgspec.structs.replace(big, node="w1"),)))
        await ref.tell(TasksEnded(("big",)))
        assert await placements.receive() == Place("next", "w1", "", T0)


async def test_a_waiting_task_is_placed_when_a_node_joins_and_a_stopped_one_never() -> None:
    async with scheduler("roundrobin") as (ref, placements):
        await ref.tell(Schedule((task("a", memory=GiB), task("b", memory=GiB))))
        assert (await placements.receive()).reason == "no worker nodes have joined yet"
        assert (await placements.receive()).task_id == "b"
        await ref.tell(TasksEnded(("b",)))  # stopped while it waited
        await ref.tell(NodesChanged((node("w1", memory=GiB),)))
        assert await placements.receive() == Place("a", "w1", "", T0)
        await ref.tell(NodesChanged((node("w1", memory=GiB), node("w2", memory=GiB))))
        await ref.tell(Schedule((task("c", memory=GiB),)))
        assert await placements.receive() == Place("c", "w2", "", T0)


# -- through the manager ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_task_waits_for_memory_and_runs_when_the_holder_ends(
    cluster: RunningCluster,
) -> None:
    """Manager, scheduler and worker together: the allocation follows the log both ways."""
    manager = cluster.manager
    _, memory, _ = capacity(cluster.settings.data_dir)

    async def submit(name: str) -> str:
        body = {"State": 2, "Task": {"Name": name, "Cmd": ["sleep", "60"], "Memory": memory}}
        r = await manager.post("/tasks", json=body)
        assert r.status_code == 201, r.text
        return r.json()["Task"]["ID"]

    first = await submit("first")
    await wait_for_state(manager, first, 2)
    second = await submit("second")
    with trio.fail_after(10):
        while not (task := (await manager.get(f"/tasks/{second}")).json())["Error"]:
            await trio.sleep(0.02)
    assert task["State"] == 0
    assert task["Error"].startswith("1 node: 1 lacks memory (need ")
    assert task["Error"].endswith("most free 0 B)")
    assert (await manager.delete(f"/tasks/{first}")).status_code == 204
    task = await wait_for_state(manager, second, 2)
    assert task["Error"] == ""
    assert (await manager.delete(f"/tasks/{second}")).status_code == 204
    await wait_for_state(manager, second, 3)
