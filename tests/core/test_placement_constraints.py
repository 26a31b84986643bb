"""Placement with node attributes: constraints filter the nodes (and say why none is left),
spread evens a job's tasks over the nodes or over an attribute's values, and the incremental
Placer keeps agreeing with the three-step reference while jobs come and go."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgspec
import msgspec.inspect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orc.core.model import Constraint, NodeInfo, State, Task
from orc.core.placement import (
    POLICIES,
    Allocation,
    Placer,
    allocations,
    attribute,
    attrs_problem,
    choose,
    job_counts,
    satisfies,
    select_candidates,
)

MiB, GiB = 1 << 20, 1 << 30


def node(name: str, memory: int = GiB, cores: int = 2, **attrs: str) -> NodeInfo:
    return NodeInfo(
        name=name,
        address=f"{name}:1",
        drivers=("process",),
        cores=cores,
        memory=memory,
        disk=10 * GiB,
        attrs=attrs or None,
    )


def task(id: str = "t", memory: int = 0, cpu: float = 0.0, **kw: Any) -> Task:
    return Task(id=id, cmd=["true"], driver="process", memory=memory, cpu=cpu, **kw)


def running(t: Task, node: str) -> Task:
    return msgspec.structs.replace(t, node=node, state=State.RUNNING)


# -- constraints ------------------------------------------------------------------------------


def test_attributes_the_built_in_node_and_missing_ones() -> None:
    n = node("w1", rack="a")
    assert attribute(n, "rack") == "a"
    assert attribute(n, "zone") == ""  # not declared: ""
    assert attribute(n, "node") == "w1"
    assert attribute(node("w2"), "rack") == ""  # attrs None


@pytest.mark.parametrize(
    ("constraint", "passes"),
    [
        (Constraint("rack", "a"), True),
        (Constraint("rack", "b"), False),
        (Constraint("rack", "a", "!="), False),
        (Constraint("rack", "b", "!="), True),
        (Constraint("zone", ""), True),  # a missing attribute is ""
        (Constraint("zone", "", "!="), False),
        (Constraint("node", "w1"), True),
        (Constraint("node", "w[0-9]+", "regexp"), True),
        (Constraint("node", "w", "regexp"), False),  # the whole value must match
        (Constraint("rack", "a|b", "regexp"), True),
        (Constraint("rack", "(", "regexp"), False),  # not a regexp: matches nothing
        (Constraint("rack", "a", "~"), False),  # an unknown operator: passes no node
    ],
)
def test_a_constraint_compares_a_node_attribute(constraint: Constraint, passes: bool) -> None:
    assert satisfies(node("w1", rack="a"), constraint) is passes


def test_constraints_filter_the_candidates() -> None:
    nodes = [node("w1", rack="a"), node("w2", rack="b"), node("w3", rack="a", zone="z1")]
    t = task(constraints=(Constraint("rack", "a"),))
    assert [n.name for n in select_candidates(t, nodes)[0]] == ["w1", "w3"]
    both = task(constraints=(Constraint("rack", "a"), Constraint("zone", "z1")))
    assert [n.name for n in select_candidates(both, nodes)[0]] == ["w3"]
    pinned = task(constraints=(Constraint("node", "w2"),))
    for policy in POLICIES:
        assert choose(policy, pinned, nodes, {}).node == "w2"
        assert Placer(policy, nodes).place(pinned).node == "w2"


def test_the_reason_counts_the_nodes_each_constraint_rules_out() -> None:
    nodes = [node("w1", rack="b"), node("w2", rack="c"), node("w3", rack="a", memory=256 * MiB)]
    t = task(memory=512 * MiB, constraints=(Constraint("rack", "a"),))
    assert select_candidates(t, nodes) == (
        [],
        "3 nodes: 2 fail constraint rack = a, 1 lacks memory (need 512 MiB, most free 256 MiB)",
    )
    # Each constraint is its own reason; a node is counted under the first it fails; ties go
    # in the order checked (constraints first); a repeated constraint counts once.
    two = task(
        constraints=(
            Constraint("zone", "", "!="),
            Constraint("rack", "a"),
            Constraint("zone", "", "!="),
        )
    )
    nodes = [node("w1", rack="a"), node("w2", zone="z1", rack="b"), node("w3", cores=1)]
    assert select_candidates(two, nodes)[1] == (
        '3 nodes: 2 fail constraint zone != "", 1 fails constraint rack = a'
    )
    bad = task(constraints=(Constraint("rack", "[", "regexp"),))
    assert select_candidates(bad, [node("w1", rack="[")])[1] == (
        "1 node: 1 fails constraint rack regexp ["
    )
    assert Placer("epvm", [node("w1")]).place(bad).reason == (
        "1 node: 1 fails constraint rack regexp ["
    )


def test_a_task_beyond_the_bounds_says_so_before_its_constraints() -> None:
    t = task(cpu=1e308, constraints=(Constraint("rack", "x"),))
    assert "more CPU than a task may" in choose("epvm", t, [node("w1")], {}).reason


# -- spread -----------------------------------------------------------------------------------


def job_tasks(n: int, spread: str, job: str = "web", **kw: Any) -> list[Task]:
    return [task(f"{job}-{i}", job_id=job, spread=spread, **kw) for i in range(n)]


@pytest.mark.parametrize("policy", POLICIES)
def test_spread_over_nodes_puts_two_of_six_on_each_of_three(policy: str) -> None:
    nodes = [node("w1"), node("w2"), node("w3")]
    placer = Placer(policy, nodes)
    picked = Counter(placer.place(t).node for t in job_tasks(6, "node", memory=MiB))
    assert picked == {"w1": 2, "w2": 2, "w3": 2}


@pytest.mark.parametrize("policy", POLICIES)
def test_spread_over_an_attribute_evens_its_values_not_the_nodes(policy: str) -> None:
    nodes = [node("w1", rack="a"), node("w2", rack="a"), node("w3", rack="b")]
    placer = Placer(policy, nodes)
    picked = Counter(placer.place(t).node for t in job_tasks(6, "rack", memory=MiB))
    assert picked["w1"] + picked["w2"] == 3 and picked["w3"] == 3, picked
    # Within rack a the policy decides: E-PVM evens it out, fit packs one node (and round
    # robin, alternating between the racks, comes back to w1 after w3 each time).
    if policy == "epvm":
        assert sorted([picked["w1"], picked["w2"]]) == [1, 2]
    else:
        assert sorted([picked["w1"], picked["w2"]]) == [0, 3]


def test_fit_alone_packs_but_spread_wins_over_it() -> None:
    nodes = [node("w1"), node("w2"), node("w3")]
    packed = Placer("fit", nodes)
    assert {packed.place(t).node for t in job_tasks(6, "", memory=MiB)} == {"w1"}
    spread = Placer("fit", nodes)
    assert len({spread.place(t).node for t in job_tasks(3, "node", memory=MiB)}) == 3


def test_spread_counts_only_the_same_job_and_only_active_tasks() -> None:
    nodes = [node("w1"), node("w2")]
    placer = Placer("fit", nodes)
    # Another job, and a task of no job, on w1 do not count against web's spread...
    assert placer.place(task("other-0", memory=MiB, job_id="other", spread="node")).node == "w1"
    assert placer.place(task("lone", memory=MiB, spread="node")).node == "w1"
    web = job_tasks(4, "node", memory=MiB)
    assert placer.place(web[0]).node == "w1"  # fit: the fuller node, spread being even
    assert placer.place(web[1]).node == "w2"
    # ... and an ended task no longer does.
    assert placer.release("web-0")
    assert placer.place(web[2]).node == "w1"
    assert placer.jobs == {"other": {"w1": 1}, "web": {"w1": 1, "w2": 1}}
    assert placer.release("web-1") and placer.release("web-2") and placer.release("other-0")
    assert placer.jobs == {}


def test_spread_is_a_preference_never_a_filter() -> None:
    nodes = [node("w1", memory=GiB), node("w2", memory=64 * MiB)]
    placer = Placer("epvm", nodes)
    picked = [placer.place(t).node for t in job_tasks(4, "node", memory=100 * MiB)]
    assert picked == ["w1"] * 4  # w2 cannot take any: its share goes to w1
    # A node without the attribute is in the group "".
    nodes = [node("w1", rack="a"), node("w2"), node("w3")]
    placer = Placer("epvm", nodes)
    picked = [placer.place(t).node for t in job_tasks(4, "rack", memory=MiB)]
    assert Counter(picked)["w1"] == 2


def test_constraints_and_spread_together() -> None:
    nodes = [node("w1", rack="a"), node("w2", rack="a"), node("w3", rack="b")]
    only_a = (Constraint("rack", "a"),)
    placer = Placer("fit", nodes)
    picked = Counter(placer.place(t).node for t in job_tasks(4, "node", constraints=only_a))
    assert picked == {"w1": 2, "w2": 2}


def test_choose_spreads_given_where_the_siblings_are() -> None:
    nodes = [node("w1"), node("w2")]
    placed = [running(t, "w1") for t in job_tasks(2, "node")]
    t = task("web-9", job_id="web", spread="node")
    assert choose("fit", t, nodes, allocations(placed), jobs=job_counts(placed)).node == "w2"
    assert choose("fit", t, nodes, allocations(placed)).node == "w1"  # no counts: fit alone
    assert job_counts([*placed, msgspec.structs.replace(placed[0], id="x", state=State.FAILED)])
    assert job_counts(placed) == {"web": {"w1": 2}}


def test_a_placer_started_from_placed_tasks_knows_their_jobs() -> None:
    nodes = [node("w1"), node("w2")]
    placed = [running(t, "w1") for t in job_tasks(2, "node")]
    placer = Placer("fit", nodes, placed)
    assert placer.jobs == {"web": {"w1": 2}}
    assert placer.place(task("web-9", job_id="web", spread="node")).node == "w2"


# -- the Placer agrees with the reference -----------------------------------------------------


def _random_nodes(rng: random.Random, count: int) -> list[NodeInfo]:
    return [
        node(
            f"n{i}",
            memory=rng.choice([GiB, 2 * GiB]),
            cores=rng.choice([1, 2, 4]),
            **{
                k: v
                for k, v in (("rack", rng.choice("ab")), ("zone", rng.choice(["z1", "z2", ""])))
                if v
            },
        )
        for i in range(count)
    ]


CONSTRAINTS: list[tuple[Constraint, ...] | None] = [
    None,
    None,
    (),
    (Constraint("rack", "a"),),
    (Constraint("zone", "z1", "!="),),
    (Constraint("node", "n[0-5]", "regexp"),),
    (Constraint("rack", "b"), Constraint("zone", "z2")),
    (Constraint("rack", "(", "regexp"),),
]


@pytest.mark.parametrize("policy", POLICIES)
def test_placer_agrees_with_the_three_steps_with_constraints_and_spread(policy: str) -> None:
    rng = random.Random(7)
    nodes = _random_nodes(rng, 10)
    placer = Placer(policy, nodes)
    live: dict[str, Task] = {}
    cursor = -1
    current = nodes
    for step in range(800):
        if live and rng.random() < 0.3:
            done = rng.choice(sorted(live))
            del live[done]
            assert placer.release(done)
        if step % 200 == 199:  # nodes go and come back, with new attributes
            current = _random_nodes(rng, 10)[: rng.randint(6, 10)]
            placer.set_nodes(current)
        job = rng.choice(["", "web", "db", "batch"])
        t = task(
            f"t{step}",
            memory=rng.choice([0, 64 * MiB, 300 * MiB]),
            cpu=rng.choice([0.0, 0.25, 1.0]),
            job_id=job,
            spread=rng.choice(["", "node", "rack", "zone", "nothing"]) if job else "",
            constraints=rng.choice(CONSTRAINTS),
        )
        expected = choose(
            policy, t, current, allocations(live.values()), cursor, job_counts(live.values())
        )
        got = placer.place(t)
        assert got == expected, step
        cursor = got.cursor
        if got.node:
            live[t.id] = running(t, got.node)
        assert placer.jobs == job_counts(live.values())


# Few names and values, so that generated nodes and constraints keep meeting.
names = st.sampled_from(["rack", "zone", "node", "x"])
values = st.sampled_from(["", "a", "b", "n1", "n2", "a|b", "n.", "(", "[a", ".*"])
constraints = st.one_of(
    st.none(),
    st.lists(
        st.builds(
            Constraint,
            attribute=names,
            value=values,
            operator=st.sampled_from(["=", "!=", "regexp", "", "~"]),
        ),
        max_size=3,
    ).map(tuple),
)
gen_nodes = st.lists(
    st.builds(
        NodeInfo,
        name=st.sampled_from(["n1", "n2", "n3", "n4"]),
        address=st.just("h:1"),
        drivers=st.sampled_from([("process",), ()]),
        cores=st.integers(-1, 4),
        memory=st.sampled_from([0, MiB, GiB]),
        attrs=st.one_of(st.none(), st.dictionaries(names, values, max_size=3)),
    ),
    max_size=4,
    unique_by=lambda n: n.name,
)
gen_tasks = st.lists(
    st.builds(
        Task,
        id=st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6"]),
        driver=st.sampled_from(["process", "docker"]),
        memory=st.sampled_from([0, MiB, 512 * MiB, -1, 2**63]),
        cpu=st.sampled_from([0.0, 0.5, float("nan"), 1e308]),
        job_id=st.sampled_from(["", "j1", "j2"]),
        spread=st.sampled_from(["", "node", "rack", "x"]),
        constraints=constraints,
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(
    node_list=gen_nodes,
    task_list=gen_tasks,
    policy=st.sampled_from(POLICIES),
    ends=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_placer_equals_choose_on_any_constraints_and_spread(
    node_list: list[NodeInfo], task_list: list[Task], policy: str, ends: list[bool]
) -> None:
    """Total (never raises, whatever the constraints and attributes) and the same answer as
    the reference, as tasks are placed and end."""
    placer = Placer(policy, node_list)
    live: dict[str, Task] = {}
    cursor = -1
    for t, end in zip(task_list, ends, strict=False):
        if t.id in live:
            continue
        got = placer.place(t)
        alloc = allocations(live.values())
        expected = choose(policy, t, node_list, alloc, cursor, job_counts(live.values()))
        assert got == expected
        assert got.node in {n.name for n in node_list} or (got.node == "" and got.reason)
        cursor = got.cursor
        if got.node:
            live[t.id] = running(t, got.node)
            if end:
                placer.release(t.id)
                del live[t.id]
    assert placer.jobs == job_counts(live.values())


# -- what a node may declare ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({}, ""),
        ({"rack": "a", "zone": "eu-1", "_x.y-z": ""}, ""),
        ({"1rack": "a"}, "attribute name '1rack'"),
        ({"ra ck": "a"}, "attribute name 'ra ck'"),
        ({"node": "w9"}, "attribute 'node' is built in"),
        ({"rack": "a,b"}, "attribute rack: its value must be at most 256 characters"),
        ({"rack": "a\x00"}, "without NUL"),
        ({"rack": "a" * 257}, "at most 256 characters"),
        ({f"k{i}": "" for i in range(65)}, "at most 64 attributes, got 65"),
    ],
)
def test_what_a_node_may_declare(attrs: dict[str, str], problem: str) -> None:
    said = attrs_problem(attrs)
    assert (problem in said and said) if problem else said == ""


def test_an_empty_allocation_is_not_needed_for_a_constrained_choice() -> None:
    # `choose` works from any allocation map, with or without entries for the nodes.
    nodes = [node("w1", rack="a"), node("w2", rack="a")]
    alloc = {"w1": Allocation(memory=GiB - MiB, tasks=1)}
    t = task(memory=2 * MiB, constraints=(Constraint("rack", "a"),))
    assert choose("epvm", t, nodes, alloc).node == "w2"
