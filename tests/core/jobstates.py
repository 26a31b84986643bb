"""Cluster states with jobs, built by applying events, for the reconciler's tests and
bench/jobs.py: nodes and job specs, a small simulated cluster (`Sim`: the reconciler, a
first-fit scheduler and obedient workers, all as events), the invariants a job must never
break, and `big_state`, a service of 10,000 Running, healthy tasks on 100 nodes.

Everything is pure and deterministic: times are computed from `T0`, never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from orc.core import decide
from orc.core.events import (
    AnyEvent,
    JobRegistered,
    NodeJoined,
    TaskExited,
    TaskScheduled,
    TaskStarted,
    TaskUnplaced,
)
from orc.core.jobspec import JobSpec, TemplateSpec
from orc.core.messages import NodeSilent
from orc.core.model import NodeInfo, State, Task
from orc.core.placement import satisfies
from orc.core.reconcile import Pass, pin_of, reconcile
from orc.core.state import ClusterState, apply
from orc.core.times import later
from orc.core.transitions import ACTIVE, TERMINAL

T0 = "2026-01-01T00:00:00+00:00"
FILLING = frozenset({State.PENDING, State.SCHEDULED, State.RUNNING})


def at(seconds: float) -> str:
    """`T0` + `seconds`, as the events carry times."""
    return later(T0, seconds)


def node(name: str, cores: int = 4, attrs: dict[str, str] | None = None) -> NodeInfo:
    return NodeInfo(
        name=name, address=f"{name}:1", drivers=("process",), cores=cores, memory=0, attrs=attrs
    )


def spec(job_id: str = "web", **fields: Any) -> JobSpec:
    """A job spec whose tasks run `sleep` with one core; `fields` are the JobSpec's, plus
    `env` for the template's Env."""
    env = fields.pop("env", None)
    task = TemplateSpec(cmd=["sleep", "1000"], driver="process", cpu=1.0, env=env)
    return JobSpec(id=job_id, task=task, **fields)


def fills(state: ClusterState, task: Task) -> bool:
    """The task fills its slot: placed or waiting to be, and no stop asked for."""
    return task.state in FILLING and task.id not in state.stop_requested


def key_of(state: ClusterState, task: Task) -> tuple[str, object]:
    job = state.jobs.get(task.job_id)
    system = job is not None and job.spec.type == "system"
    return task.job_id, pin_of(task) if system else task.slot


def broken(state: ClusterState) -> str:
    """The first invariant the state breaks, or "": at most one task fills a (job, slot) (a
    system job's: a (job, node)), and no node runs more cores than it has."""
    seen: dict[tuple[str, object], str] = {}
    for job_id, ids in state.job_tasks.items():
        for task_id in ids:
            t = state.tasks[task_id]
            if not fills(state, t):
                continue
            key = key_of(state, t)
            if key in seen:
                return f"job {job_id}: tasks {seen[key]} and {t.id} both fill {key[1]}"
            seen[key] = t.id
    used: dict[str, float] = {}
    for t in state.tasks.values():
        if t.state in ACTIVE and t.node:
            used[t.node] = used.get(t.node, 0.0) + t.cpu
    for name, cores in used.items():
        info = state.nodes.get(name)
        if info is not None and info.cores and cores > info.cores:
            return f"node {name} runs {cores} cores of {info.cores}"
    return ""


class Sim:
    """A cluster in events: every change is an event applied to `state` and kept in `log`,
    so that replaying `log` rebuilds `state`. `check` (on by default) asserts the invariants
    after every event."""

    def __init__(self, check: bool = True) -> None:
        self.state = ClusterState()
        self.log: list[AnyEvent] = []
        self.check = check
        self.passes: list[Pass] = []

    def apply(self, events: Iterable[AnyEvent]) -> None:
        for e in events:
            apply(self.state, e)
            self.log.append(e)
            if self.check:
                problem = broken(self.state)
                assert not problem, f"after {e}: {problem}"

    def join(self, *nodes: NodeInfo, now: str = T0) -> None:
        self.apply(NodeJoined(at=now, node=n) for n in nodes)

    def register(self, job: JobSpec, now: str = T0, reason: str = "submitted") -> None:
        old = self.state.jobs.get(job.id)
        version = 0 if old is None else old.version + 1
        self.apply([JobRegistered(at=now, job=job, version=version, reason=reason)])

    def reconcile(self, now: str, job_ids: Iterable[str] | None = None) -> Pass:
        result = reconcile(self.state, now, job_ids)
        self.passes.append(result)
        self.apply(result.events)
        return result

    def node_down(self, name: str, now: str) -> None:
        """The manager's own decision: the node is down and its tasks failed (or ended, when
        a stop was asked for)."""
        self.apply(decide.node_down(self.state, NodeSilent(name, "silent", now)).events)

    def schedule(self, now: str) -> None:
        """First fit: each Pending task of a job onto the first up node that has its driver,
        satisfies its constraints and has the cores left; else `TaskUnplaced`."""
        used: dict[str, float] = {}
        for t in self.state.tasks.values():
            if t.state in ACTIVE and t.node:
                used[t.node] = used.get(t.node, 0.0) + t.cpu
        up = self.state.up_nodes()
        for ids in list(self.state.job_tasks.values()):
            for task_id in list(ids):
                t = self.state.tasks[task_id]
                if t.state != State.PENDING:
                    continue
                for n in up:
                    if t.driver not in n.drivers:
                        continue
                    if not all(satisfies(n, c) for c in t.constraints or ()):
                        continue
                    if n.cores and used.get(n.name, 0.0) + t.cpu > n.cores:
                        continue
                    used[n.name] = used.get(n.name, 0.0) + t.cpu
                    self.apply([TaskScheduled(at=now, task_id=t.id, node=n.name)])
                    break
                else:
                    reason = "no node fits: not enough cores"
                    if t.error != reason:
                        self.apply([TaskUnplaced(at=now, task_id=t.id, reason=reason)])

    def work(self, now: str) -> None:
        """Workers: a stop asked for ends the task (exit 0: a graceful stop); a Scheduled
        task starts."""
        for t in list(self.state.tasks.values()):
            if t.id in self.state.stop_requested and t.state in ACTIVE:
                self.apply(
                    [TaskExited(at=now, task_id=t.id, node=t.node, exit_code=0, stopped=True)]
                )
        for t in list(self.state.tasks.values()):
            if t.state == State.SCHEDULED and not self.state.waiting(t.id):
                self.apply([TaskStarted(at=now, task_id=t.id, node=t.node)])

    def exit(self, task_id: str, now: str, code: int = 0) -> None:
        t = self.state.tasks[task_id]
        self.apply([TaskExited(at=now, task_id=t.id, node=t.node, exit_code=code)])

    def round(self, now: str, job_ids: Iterable[str] | None = None) -> Pass:
        """One turn of the cluster: reconcile, stop what was asked, place, start."""
        result = self.reconcile(now, job_ids)
        self.work(now)
        self.schedule(now)
        self.work(now)
        return result

    def settle(self, start: float, step: float = 5.0, rounds: int = 200) -> float:
        """Rounds with time advancing by `step` from `start` seconds past `T0`, until a round
        changes nothing (no decision, no placement, no start or stop) and asks for no wake;
        the time it ended at."""
        t = start
        for _ in range(rounds):
            logged = len(self.log)
            result = self.round(at(t))
            if len(self.log) == logged and not result.wake:
                return t
            t += step
        raise AssertionError(f"no quiet round in {rounds} rounds")

    # what a test looks at

    def tasks(self, job_id: str, states: Sequence[State] | None = None) -> list[Task]:
        ts = [self.state.tasks[i] for i in self.state.job_tasks.get(job_id, {})]
        return [t for t in ts if states is None or t.state in states]

    def running(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks(job_id, [State.RUNNING]) if fills(self.state, t)]

    def filling(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks(job_id) if fills(self.state, t)]

    def ended(self, job_id: str) -> list[Task]:
        return [t for t in self.tasks(job_id) if t.state in TERMINAL]


# -- a big service, for the reconciler's fast path and bench/jobs.py ---------------------------


def big_events(tasks: int = 10_000, nodes: int = 100) -> tuple[list[AnyEvent], str]:
    """The events of a service job of `tasks` tasks on `nodes` nodes, every task Running,
    current and judged healthy, its deployment done; and a time after them all."""
    sim = Sim(check=False)
    cores = -(-tasks // nodes)  # enough for an even spread
    sim.join(*(node(f"n{i:03d}", cores=cores) for i in range(nodes)))
    sim.register(spec("big", count=tasks))
    sim.reconcile(T0)  # places every slot: the first deployment has no group limit
    names = [f"n{i:03d}" for i in range(nodes)]
    placed = [
        TaskScheduled(at=T0, task_id=task_id, node=names[i % nodes])
        for i, task_id in enumerate(sim.state.job_tasks["big"])
    ]
    sim.apply(placed)
    sim.apply(TaskStarted(at=T0, task_id=e.task_id, node=e.node) for e in placed)
    now = at(60)
    sim.reconcile(now)  # healthy, every one, then deployed
    job = sim.state.jobs["big"]
    assert job.deployment is not None and job.stable == 0, job.deployment
    return sim.log, now


def big_state(tasks: int = 10_000, nodes: int = 100) -> tuple[ClusterState, str]:
    """`big_events` applied: the state, and the time to reconcile it at."""
    events, now = big_events(tasks, nodes)
    state = ClusterState()
    for e in events:
        apply(state, e)
    return state, now
