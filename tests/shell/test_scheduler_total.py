"""The Scheduler actor on tasks whose spec is outside today's bounds (issue 13): an older orc
accepted a CPU of 1e308, and the scheduler raised OverflowError on it, crashed, was restarted
by its supervisor with no nodes, and crashed again at every start. Placement is total now: such a
task is placed nowhere, with the reason, and the scheduler goes on."""

from __future__ import annotations

import math

import msgspec
import pytest
import trio

from orc.core.messages import NodesChanged, Place, Schedule, TasksEnded, TasksPlaced
from tests.core.test_placement import T0, GiB, node, task
from tests.shell.test_scheduling import scheduler

TOO_MUCH = "asks for more CPU than a task may (at most 1024 cores)"


@pytest.mark.parametrize("cpu", [1e308, math.inf, math.nan])
@pytest.mark.parametrize("policy", ["epvm", "fit", "roundrobin"])
async def test_a_task_past_the_bounds_is_placed_nowhere_and_the_scheduler_goes_on(
    cpu: float, policy: str
) -> None:
    async with scheduler(policy) as (ref, placements):
        await ref.tell(NodesChanged((node("w1", memory=GiB),)))
        await ref.tell(Schedule((task("huge", cpu=cpu), task("next", memory=GiB))))
        with trio.fail_after(5):
            assert await placements.receive() == Place("huge", "", TOO_MUCH, T0)
            # the same scheduler, with its nodes: it did not crash and start afresh
            assert await placements.receive() == Place("next", "w1", "", T0)


async def test_placements_of_such_a_task_confirmed_from_the_log_are_counted() -> None:
    """The manager confirms placements it finds in the log (`TasksPlaced`): one an older orc
    made for such a task is counted, freed when it ends, and nothing crashes on the way."""
    async with scheduler("epvm") as (ref, placements):
        await ref.tell(NodesChanged((node("w1", memory=GiB),)))
        placed = msgspec.structs.replace(task("old", cpu=math.inf), node="w1")
        await ref.tell(TasksPlaced((placed,)))
        await ref.tell(Schedule((task("next", cpu=1.0),)))
        with trio.fail_after(5):
            assert (await placements.receive()).reason.startswith("1 node: 1 lacks CPU")
            await ref.tell(TasksEnded(("old",)))
            assert await placements.receive() == Place("next", "w1", "", T0)
