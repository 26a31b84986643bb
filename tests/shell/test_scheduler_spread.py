"""The Scheduler actor with constraints and spread: placements the manager confirms from the
log (a restart, a task an earlier scheduler placed) count for their job's spread, ended ones
stop counting, and a task no node's attributes allow waits until a node that has them joins."""

from __future__ import annotations

import msgspec
import trio

from orc.core.messages import NodesChanged, Place, Schedule, TasksEnded, TasksPlaced
from orc.core.model import Constraint, NodeInfo
from tests.core.test_placement import T0, GiB, node, task
from tests.shell.test_scheduling import scheduler


def with_attrs(n: NodeInfo, **attrs: str) -> NodeInfo:
    return msgspec.structs.replace(n, attrs=attrs)


async def test_confirmed_and_ended_placements_steer_spread() -> None:
    async with scheduler("fit") as (ref, placements):
        await ref.tell(NodesChanged((node("w1", memory=GiB), node("w2", memory=GiB))))
        # Two of the job's tasks are on w1 by the log: fit alone would pack w1 again.
        old = [
            msgspec.structs.replace(task(f"old{i}", job_id="web", spread="node"), node="w1")
            for i in range(2)
        ]
        await ref.tell(TasksPlaced(tuple(old)))
        await ref.tell(Schedule((task("new1", job_id="web", spread="node"),)))
        with trio.fail_after(5):
            assert await placements.receive() == Place("new1", "w2", "", T0)
            await ref.tell(TasksEnded(("old0", "old1")))  # w1 holds none of web's now
            await ref.tell(Schedule((task("new2", job_id="web", spread="node"),)))
            assert await placements.receive() == Place("new2", "w1", "", T0)


async def test_a_task_waits_for_a_node_with_the_attribute_it_needs() -> None:
    async with scheduler("epvm") as (ref, placements):
        w1 = with_attrs(node("w1"), rack="a")
        await ref.tell(NodesChanged((w1,)))
        await ref.tell(Schedule((task("t", constraints=(Constraint("rack", "b"),)),)))
        with trio.fail_after(5):
            waits = await placements.receive()
            assert waits == Place("t", "", "1 node: 1 fails constraint rack = b", T0)
            await ref.tell(NodesChanged((w1, with_attrs(node("w2"), rack="b"))))
            assert await placements.receive() == Place("t", "w2", "", T0)
