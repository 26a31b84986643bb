"""Placement, pure: the policies (E-PVM, fit, round robin), the fit filter and its reasons, and
the incremental Placer index that must agree with the three-step reference."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.model import NodeInfo, State, Task
from orc.core.placement import (
    LIEB,
    Allocation,
    Placer,
    allocations,
    allocations_of,
    choose,
    epvm_cost,
    fit_slack,
    need_of,
    pick,
    score,
    select_candidates,
)
from orc.core.state import replay

MiB, GiB = 1 << 20, 1 << 30
NANO = 1_000_000_000
T0 = "2024-01-01T00:00:00Z"


def node(
    name: str,
    memory: int = GiB,
    cores: int = 2,
    disk: int = 10 * GiB,
    drivers: tuple[str, ...] = ("process",),
) -> NodeInfo:
    return NodeInfo(
        name=name, address=f"{name}:1", drivers=drivers, cores=cores, memory=memory, disk=disk
    )


def task(
    id: str = "t",
    cpu: float = 0.0,
    memory: int = 0,
    disk: int = 0,
    driver: str = "process",
    **kw: Any,
) -> Task:
    return Task(id=id, cmd=["true"], driver=driver, cpu=cpu, memory=memory, disk=disk, **kw)


def test_epvm_cost_matches_the_formula_by_hand() -> None:
    # 1 GiB node with 256 MiB and 0.5 of 2 cores allocated to 1 task; the task asks the same:
    # each of the three terms is L**0.5 - L**0.25 = 0.12689154542467151.
    n = node("a", memory=GiB, cores=2)
    t = need_of(task(cpu=0.5, memory=256 * MiB))
    missing, cost = epvm_cost(t, n, cpu=NANO // 2, memory=256 * MiB, tasks=1)
    assert missing == 0
    assert cost == pytest.approx(3 * (LIEB**0.5 - LIEB**0.25))
    assert cost == pytest.approx(0.38067463627401454)

    # An empty 4-core node, a 1-core 256 MiB task: three times L**0.25 - 1.
    _, empty = epvm_cost(need_of(task(cpu=1, memory=256 * MiB)), node("b", cores=4), 0, 0, 0)
    assert empty == pytest.approx(3 * 0.11391493337812797)

    # A task asking nothing pays only for the task count: 3 tasks -> L**1 - L**0.75.
    _, count_only = epvm_cost(need_of(task()), n, 0, 0, 3)
    assert count_only == pytest.approx(0.15744785166823205)


def test_epvm_picks_the_cheapest_node_and_spreads() -> None:
    nodes = [node("a"), node("b")]
    alloc = {"a": Allocation(cpu=NANO // 2, memory=256 * MiB, tasks=1)}
    t = task(cpu=0.5, memory=256 * MiB)
    candidates, _ = select_candidates(t, nodes, alloc)
    keys = score("epvm", t, candidates, alloc)
    assert pick(candidates, keys).name == "b"
    placer = Placer("epvm", nodes)
    picked = [placer.place(task(f"t{i}", cpu=0.1, memory=MiB)).node for i in range(4)]
    assert picked == ["a", "b", "a", "b"]


def test_a_node_without_stats_never_wins() -> None:
    blind = NodeInfo(name="blind", address="x:1", drivers=("process",))  # no memory, no cores
    busy = node("busy", memory=GiB, cores=1)
    alloc = {"busy": Allocation(cpu=NANO * 9 // 10, memory=1000 * MiB, tasks=50)}
    t = task(cpu=0.1, memory=10 * MiB)
    assert choose("epvm", t, [blind, busy], alloc).node == "busy"
    assert choose("fit", t, [blind, busy], alloc).node == "busy"
    # ... but it still runs tasks when it is the only node that can.
    assert choose("epvm", task(cpu=0.5), [blind, busy], alloc).node == "blind"


def test_epvm_does_not_overflow_with_thousands_of_tasks() -> None:
    missing, cost = epvm_cost(need_of(task()), node("a"), 0, 0, 100_000)
    assert missing == 0 and cost >= 0


def test_exact_fit_is_allowed_and_one_byte_more_is_not() -> None:
    n = node("a", memory=GiB, cores=2, disk=GiB)
    alloc = {"a": Allocation(cpu=NANO, memory=GiB // 2, disk=GiB // 2, tasks=1)}
    exact = task(cpu=1.0, memory=GiB // 2, disk=GiB // 2)
    assert select_candidates(exact, [n], alloc)[0] == [n]
    over = msgspec.structs.replace(exact, memory=GiB // 2 + 1)
    assert select_candidates(over, [n], alloc) == (
        [],
        "1 node: 1 lacks memory (need 512.01 MiB, most free 512 MiB)",
    )
    assert select_candidates(msgspec.structs.replace(exact, cpu=1.001), [n], alloc)[1] == (
        "1 node: 1 lacks CPU (need 1.01 cores, most free 1 core)"
    )
    assert select_candidates(msgspec.structs.replace(exact, disk=GiB), [n], alloc)[1] == (
        "1 node: 1 lacks disk (need 1 GiB, most free 512 MiB)"
    )


def test_cpu_sums_exactly() -> None:
    placer = Placer("fit", [node("a", cores=1)])
    for i in range(10):
        assert placer.place(task(f"t{i}", cpu=0.1)).node == "a"
    assert placer.place(task("one-more", cpu=0.1)).node == ""


def test_a_task_asking_nothing_fits_a_full_node() -> None:
    n = node("a")
    full = {"a": Allocation(cpu=2 * NANO, memory=GiB, disk=10 * GiB, tasks=9)}
    assert select_candidates(task(), [n], full)[0] == [n]
    assert select_candidates(task(memory=1), [n], full)[0] == []


def test_a_node_going_away_takes_its_capacity_and_returns_it() -> None:
    a, b = node("a", memory=GiB), node("b", memory=GiB)
    placer = Placer("epvm", [a, b])
    assert placer.place(task("t1", memory=GiB)).node == "a"
    placer.set_nodes([b])
    assert placer.place(task("t2", memory=GiB)).node == "b"
    assert placer.place(task("t3", memory=GiB)).reason == (
        "1 node: 1 lacks memory (need 1 GiB, most free 0 B)"
    )
    placer.set_nodes([a, b])  # a is back and still runs t1
    assert placer.place(task("t3", memory=GiB)).node == ""
    assert placer.allocations() == {
        "a": Allocation(memory=GiB, tasks=1),
        "b": Allocation(memory=GiB, tasks=1),
    }


def test_reasons_are_summed_per_reason_most_common_first() -> None:
    nodes = [node("a"), node("b"), node("c", drivers=("docker",))]
    alloc = {"a": Allocation(memory=GiB - 256 * MiB), "b": Allocation(memory=GiB - 100 * MiB)}
    assert select_candidates(task(memory=512 * MiB), nodes, alloc) == (
        [],
        "3 nodes: 2 lack memory (need 512 MiB, most free 256 MiB), 1 lacks driver process",
    )
    assert select_candidates(task(), [], {}) == ([], "no worker nodes have joined yet")


def test_round_robin_cycles_over_the_nodes_that_fit() -> None:
    nodes = [node("a"), node("b", memory=MiB), node("c")]
    placer = Placer("roundrobin", nodes)
    picked = [placer.place(task(f"t{i}", memory=2 * MiB)).node for i in range(4)]
    assert picked == ["a", "c", "a", "c"]
    assert [placer.place(task(f"z{i}")).node for i in range(3)] == ["a", "b", "c"]


def test_fit_packs_the_fullest_node_that_fits() -> None:
    nodes = [node("a"), node("b"), node("c")]
    alloc = {"b": Allocation(memory=GiB // 2, cpu=NANO), "c": Allocation(memory=GiB - MiB)}
    t = task(memory=100 * MiB, cpu=0.5)
    assert choose("fit", t, nodes, alloc).node == "b"  # c is fuller but lacks memory
    assert fit_slack(need_of(t), nodes[0], 0, 0, 0)[1] == pytest.approx(
        ((GiB - 100 * MiB) / GiB + 0.75) / 2
    )


@pytest.mark.parametrize("policy", ["roundrobin", "epvm", "fit"])
def test_placer_agrees_with_the_three_steps(policy: str) -> None:
    rng = random.Random(6)
    nodes = [
        node(
            f"n{i}",
            memory=rng.choice([GiB, 2 * GiB]),
            cores=rng.choice([1, 2, 4]),
            disk=rng.choice([GiB, 0]),
            drivers=rng.choice([("process",), ("process", "docker")]),
        )
        for i in range(12)
    ]
    shapes: list[dict[str, Any]] = [
        dict(memory=m, cpu=c, disk=d, driver=drv)
        for m in (0, 64 * MiB, 300 * MiB)
        for c in (0.0, 0.25, 1.0)
        for d in (0, 100 * MiB)
        for drv in ("process", "docker")
    ]
    placer = Placer(policy, nodes)
    live: dict[str, Task] = {}
    cursor = -1
    for step in range(600):
        if live and rng.random() < 0.35:
            done = rng.choice(sorted(live))
            del live[done]
            assert placer.release(done)
        if step == 300:  # a node goes away and comes back later
            placer.set_nodes(nodes[1:])
        if step == 450:
            placer.set_nodes(nodes)
        current = nodes[1:] if 300 <= step < 450 else nodes
        t = task(f"t{step}", **rng.choice(shapes))
        alloc = allocations(live.values())
        expected = choose(policy, t, current, alloc, cursor)
        got = placer.place(t)
        assert got == expected, step
        cursor = got.cursor
        if got.node:
            live[t.id] = msgspec.structs.replace(t, node=got.node, state=State.RUNNING)
        names = {n.name for n in current}
        expected_alloc = {k: v for k, v in allocations(live.values()).items() if k in names}
        assert placer.allocations() == expected_alloc


def test_allocations_are_what_is_placed_and_not_finished() -> None:
    n = node("w1")
    events: list[AnyEvent] = [NodeJoined(at=T0, node=n)]
    for i, mem in enumerate((MiB, 2 * MiB, 4 * MiB)):
        events.append(TaskSubmitted(at=T0, task=task(f"t{i}", memory=mem, cpu=0.5)))
        events.append(TaskScheduled(at=T0, task_id=f"t{i}", node="w1"))
    events.append(TaskStarted(at=T0, task_id="t1", node="w1"))
    events.append(TaskExited(at=T0, task_id="t2", node="w1", exit_code=0))
    events.append(TaskSubmitted(at=T0, task=task("pending", memory=GiB)))
    state = replay(events)
    assert allocations_of(state) == {"w1": Allocation(cpu=NANO, memory=3 * MiB, tasks=2)}
