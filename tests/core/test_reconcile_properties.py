"""Properties of the reconciler (orc.core.reconcile), over any sequence of what happens to a
cluster: tasks exiting well or badly, health checks failing, nodes lost and back, scaling,
new templates, time passing. A simulated cluster (tests/core/jobstates.py: `Sim`) turns each
step into events, runs the reconciler, a first-fit scheduler and obedient workers, and after
every event checks what must never happen: two tasks filling one slot of a job, a node running
more cores than it has. Once the steps stop (and lost nodes are back), passes with time moving
on must converge: the job as its spec says, and a pass that decides nothing. Replaying the log
from nothing gives the same state and the same pass (determinism), and no pass changes the
state it is given (purity).

Examples are few and small: the file runs in seconds even on a loaded machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from orc.core.events import AnyEvent, JobScaled, TaskUnhealthy
from orc.core.jobs import COMPLETE, DEPLOYED, FAILED, RUNNING
from orc.core.jobspec import ConstraintSpec, RescheduleSpec, UpdateSpec
from orc.core.model import State
from orc.core.reconcile import Pass, pin_of, reconcile, succeeded
from orc.core.snapshot import state_digest
from orc.core.state import ClusterState, apply
from tests.core.jobstates import Sim, at, node, spec

NODES = ("n0", "n1", "n2")
QUICK = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RETRY = RescheduleSpec(attempts=0, interval=600, delay=5)

exits = st.tuples(st.just("exit"), st.integers(0, 10), st.booleans())
downs = st.tuples(st.just("down"), st.sampled_from(NODES))
ups = st.tuples(st.just("up"), st.sampled_from(NODES))
waits = st.tuples(st.just("advance"), st.sampled_from([1, 5, 10, 30, 120]))
unhealthy = st.tuples(st.just("unhealthy"), st.integers(0, 10))
scales = st.tuples(st.just("scale"), st.integers(0, 5))
updates = st.tuples(st.just("update"), st.integers(0, 2))


Rule = Callable[[Sim], str]


class Checked(Sim):
    """A `Sim` whose every pass is also checked pure (the state is the same after it), and
    whose state is checked against `rules` after every event (each says what is wrong, or "")."""

    def __init__(self, *rules: Rule) -> None:
        super().__init__()
        self.rules = rules

    def reconcile(self, now: str, job_ids: Any = None) -> Pass:
        before = state_digest(self.state)
        result = reconcile(self.state, now, job_ids)
        assert state_digest(self.state) == before, "a pass changed the state"
        self.passes.append(result)
        self.apply(result.events)
        return result

    def apply(self, events: Iterable[AnyEvent]) -> None:
        for e in events:
            super().apply([e])
            for rule in self.rules:
                problem = rule(self)
                assert not problem, f"after {e}: {problem}"


def at_most(job_id: str, limit: int) -> Rule:
    """The job fills at most `limit` slots (a batch job's Parallelism)."""

    def rule(sim: Sim) -> str:
        n = len(sim.filling(job_id))
        return f"{n} tasks fill slots of {job_id}, more than {limit}" if n > limit else ""

    return rule


def group_limit(job_id: str, max_parallel: int) -> Rule:
    """While a deployment runs and the job has a stable version, at most `max_parallel` tasks
    made for it (its version or later) are not yet judged healthy."""

    def rule(sim: Sim) -> str:
        job = sim.state.jobs.get(job_id)
        d = job.deployment if job is not None else None
        if job is None or d is None or d.state != RUNNING or job.stable < 0:
            return ""
        new = [
            t.id
            for t in sim.filling(job_id)
            if t.job_version >= d.version and t.id not in d.healthy
        ]
        return f"{len(new)} tasks in flight: {new}" if len(new) > max_parallel else ""

    return rule


def play(sim: Sim, job_id: str, steps: list[tuple[Any, ...]], make: Any = None) -> float:
    """Each step as events, then a round of the cluster; the time reached (seconds past T0)."""
    t = 0.0
    sim.round(at(t))
    for step in steps:
        t += 1
        now = at(t)
        match step:
            case ("exit", i, ok):
                running = sorted(sim.running(job_id), key=lambda x: x.id)
                if running:
                    sim.exit(running[i % len(running)].id, now, code=0 if ok else 1)
            case ("unhealthy", i):
                running = sorted(sim.running(job_id), key=lambda x: x.id)
                if running:
                    victim = running[i % len(running)]
                    reason = "unhealthy: GET /health: 500"
                    sim.apply(
                        [
                            TaskUnhealthy(
                                at=now,
                                task_id=victim.id,
                                node=victim.node,
                                reason=reason,
                                failures=3,
                                stop=False,
                            )
                        ]
                    )
            case ("down", name):
                if name in sim.state.nodes:
                    sim.node_down(name, now)
            case ("up", name):
                sim.join(make(name) if make else node(name, cores=2), now=now)
            case ("advance", seconds):
                t += seconds
                now = at(t)
            case ("scale", count):
                sim.apply([JobScaled(at=now, job_id=job_id, count=count, reason="scale")])
            case ("update", env):
                old = sim.state.jobs[job_id].spec
                task = replace(old.task, env=[f"V={env}"])
                sim.register(replace(old, task=task), now=now)
        sim.round(now)
    return t


def all_back(sim: Sim, t: float, make: Any = None) -> None:
    for name in NODES:
        if name in sim.state.down or name not in sim.state.nodes:
            sim.join(make(name) if make else node(name, cores=2), now=at(t))


def same_on_replay(sim: Sim, now: str) -> None:
    replayed = ClusterState()
    for e in sim.log:
        apply(replayed, e)
    assert state_digest(replayed) == state_digest(sim.state)
    assert reconcile(replayed, now) == reconcile(sim.state, now)


@QUICK
@given(
    count=st.integers(0, 5),
    max_parallel=st.integers(1, 2),
    auto_revert=st.booleans(),
    steps=st.lists(st.one_of(exits, downs, ups, waits, unhealthy, scales, updates), max_size=30),
)
# always one run where nothing fails, so the deployed branch below is checked in every run
@example(count=3, max_parallel=1, auto_revert=False, steps=[])
def test_a_service_converges_to_count_healthy_tasks(
    count: int, max_parallel: int, auto_revert: bool, steps: list[tuple[Any, ...]]
) -> None:
    sim = Checked(group_limit("web", max_parallel))
    sim.join(*(node(n, cores=2) for n in NODES))
    update = UpdateSpec(
        max_parallel=max_parallel,
        min_healthy_time=10,
        healthy_deadline=60,
        auto_revert=auto_revert,
    )
    sim.register(spec("web", count=count, update=update, reschedule=RETRY))
    t = play(sim, "web", steps)
    all_back(sim, t + 1)
    end = sim.settle(t + 1, step=10, rounds=300)

    job = sim.state.jobs["web"]
    filling = sim.filling("web")
    assert sorted(x.slot for x in filling) == list(range(job.spec.count))
    assert all(x.state == State.RUNNING for x in filling)
    d = job.deployment
    assert d is not None
    if d.state != FAILED:
        # every task runs the current template, and the deployment got there
        assert d.state == DEPLOYED
        assert all(job.current(x.job_version) for x in filling)
        assert job.current(job.stable)
    assert reconcile(sim.state, at(end + 1000)) == Pass([], {})  # a fixed point
    same_on_replay(sim, at(end + 1))


def racked(name: str) -> Any:
    """Nodes n0 and n1 are in rack r1, n2 in r2."""
    return node(name, cores=2, attrs={"rack": "r2" if name == "n2" else "r1"})


@QUICK
@given(
    steps=st.lists(
        st.one_of(
            exits,
            downs,
            ups,
            waits,
            updates,
            st.tuples(st.just("move"), st.sampled_from(NODES), st.sampled_from(["r1", "r2"])),
        ),
        max_size=30,
    )
)
def test_a_system_job_converges_to_one_task_per_eligible_node(
    steps: list[tuple[Any, ...]],
) -> None:
    sim = Checked()
    sim.join(*(racked(n) for n in NODES))
    job = spec(
        "agent",
        type="system",
        constraints=[ConstraintSpec(attribute="rack", value="r1")],
        reschedule=RETRY,
    )
    sim.register(job)
    moves = [s for s in steps if s[0] == "move"]
    t = play(sim, "agent", [s for s in steps if s[0] != "move"], make=racked)
    for i, (_, name, rack) in enumerate(moves):  # attributes change after the rest
        sim.join(node(name, cores=2, attrs={"rack": rack}), now=at(t + i))
        sim.round(at(t + i))
    t += len(moves)
    for name in NODES:
        if name in sim.state.down:
            sim.join(sim.state.nodes[name], now=at(t))
    end = sim.settle(t + 1, step=10, rounds=100)

    wanted = sorted(n.name for n in sim.state.up_nodes() if n.attrs and n.attrs.get("rack") == "r1")
    filling = sim.filling("agent")
    assert sorted(pin_of(x) for x in filling) == wanted
    assert all(x.node == pin_of(x) and x.state == State.RUNNING for x in filling)
    current = sim.state.jobs["agent"]
    assert all(current.current(x.job_version) for x in filling)
    assert reconcile(sim.state, at(end + 1000)) == Pass([], {})
    same_on_replay(sim, at(end + 1))


@QUICK
@given(
    count=st.integers(0, 6),
    parallelism=st.integers(0, 3),
    steps=st.lists(st.one_of(exits, downs, ups, waits), max_size=30),
)
def test_a_batch_job_never_runs_more_than_its_parallelism_and_completes(
    count: int, parallelism: int, steps: list[tuple[Any, ...]]
) -> None:
    sim = Checked(at_most("etl", parallelism or count))
    sim.join(*(node(n, cores=2) for n in NODES))
    sim.register(spec("etl", type="batch", count=count, parallelism=parallelism, reschedule=RETRY))
    t = play(sim, "etl", steps)
    all_back(sim, t + 1)
    for _ in range(100):  # every task now succeeds
        if sim.state.jobs["etl"].status == COMPLETE:
            break
        t += 10
        sim.round(at(t))
        for x in sim.running("etl"):
            sim.exit(x.id, at(t), code=0)
    assert sim.state.jobs["etl"].status == COMPLETE
    successes = sorted(x.slot for x in sim.ended("etl") if succeeded(x))
    assert successes == list(range(count))  # each slot succeeded exactly once
    assert reconcile(sim.state, at(t + 1000)) == Pass([], {})
    same_on_replay(sim, at(t + 1))
