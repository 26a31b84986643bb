"""Jobs in the cluster state: each job's record (its versions, its deployment) as `apply`
builds it from the log, the names of the tasks a job makes, and the views clients see.

What a job *does* (which tasks to place, stop or replace, and when) is the reconciler's
(`orc.core.reconcile`); this module holds what the reconciler reads.

The decisions on a client's job requests are `orc.core.decide`'s (`register`, `scale`,
`stop_job`, `revert`), beside every other decision.

Everything here is pure: no I/O, no clock (times arrive in the commands).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping

import msgspec

from orc.core.events import Event, JobRegistered, NodeDown, NodeJoined, TaskSubmitted
from orc.core.jobspec import JobSpec, template_of
from orc.core.model import State, Task, wire_name

# Deployment states. A deployment rolls a service job's tasks onto a new template.
RUNNING, DEPLOYED, FAILED, CANCELLED = "running", "successful", "failed", "cancelled"

# Job statuses.
LIVE, STOPPED, COMPLETE = "running", "stopped", "complete"

# Task IDs of a job's tasks: UUIDs derived from the job and a counter kept in the log, so the
# same decisions name the same tasks live and in replay.
_NAMESPACE = uuid.UUID("6f1c2a52-8a0e-4bd2-9a55-4f2f7d9c0b1e")


def task_id_for(job_id: str, n: int) -> str:
    """The ID of the `n`th task (from 0) job `job_id` ever made."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}#{n}"))


_PLACED = frozenset({State.PENDING, State.SCHEDULED, State.RUNNING})


def rolls(old: JobSpec, new: JobSpec) -> bool:
    """Registering `new` over `old` starts a rolling update: a service whose task template
    (as `template_of` says) changes. A change of Count or Name replaces nothing."""
    return new.type == "service" and template_of(new) != template_of(old)


class Deployment(msgspec.Struct, frozen=True, gc=False):
    """A rolling update to `version`: `running` until every slot runs a healthy task of it
    (`successful`), one of its tasks fails or is not healthy in time (`failed`), or the job
    stops or changes again (`cancelled`). `healthy` and `unhealthy` are the tasks of the
    version the reconciler judged (`JobDecided` `healthy` / `unhealthy`)."""

    version: int
    state: str
    started_at: str
    reason: str = ""
    # task IDs in the order judged (dicts: ordered, and a verdict is added in place; see
    # `orc.core.state`)
    healthy: dict[str, None] = msgspec.field(default_factory=dict)
    unhealthy: dict[str, None] = msgspec.field(default_factory=dict)


class JobVersion(msgspec.Struct, frozen=True, gc=False):
    """One version of a job's spec: when and why it was registered."""

    version: int
    spec: JobSpec
    at: str
    reason: str


class JobRecord(msgspec.Struct, frozen=True, gc=False):
    """A job as the log made it. `spec` is the current version's spec, with the count as last
    scaled. `made` counts the tasks the job ever made (it names the next one); `waiting` is
    what it waits for now ("" for nothing); `stable` is the last version whose deployment
    succeeded (-1: none yet). A periodic job's runs are jobs of their own whose `parent` is
    it; `launched_at` is when it last launched one."""

    spec: JobSpec
    version: int
    status: str
    submitted_at: str
    updated_at: str
    versions: tuple[JobVersion, ...]
    stable: int = -1
    deployment: Deployment | None = None
    made: int = 0
    waiting: str = ""
    parent: str = ""
    launched_at: str | None = None

    def spec_of(self, version: int) -> JobSpec | None:
        for v in self.versions:
            if v.version == version:
                return v.spec
        return None

    def current(self, version: int) -> bool:
        """A task of `version` runs the current template (no update replaces it)."""
        if version == self.version:
            return True
        spec = self.spec_of(version)
        return spec is not None and template_of(spec) == template_of(self.spec)


# -- what clients see -------------------------------------------------------------------------


class View(msgspec.Struct, frozen=True, rename=wire_name, gc=False):
    """Base of the answers about jobs: PascalCase keys, as every body orc sends."""


class VersionTally(View, frozen=True):
    """A deployment's tasks of one version: placed (Pending, Scheduled or Running, and not
    being stopped), running, and judged healthy or unhealthy by the reconciler."""

    version: int
    placed: int
    running: int
    healthy: int
    unhealthy: int


class DeploymentView(View, frozen=True):
    """A rolling update: its state with the reason, how many tasks the job wants, and each
    version's tasks (the new one and those it replaces)."""

    version: int
    state: str
    reason: str
    started_at: str
    desired: int
    placed: int
    healthy: int
    unhealthy: int
    versions: list[VersionTally]


class RolloutView(View, frozen=True):
    """Whether the job's current version is out: `running` (still rolling out; `Reason`:
    what it waits for), `successful`, `failed` or `stopped`, with why. What `orc job run`
    watches, so that the rule lives here and not in the client."""

    version: int
    state: str
    reason: str


class JobView(View, frozen=True):
    """`GET /jobs/{id}`: the job, its tasks by state, what it waits for, its deployment, and
    how the rollout of its current version stands."""

    id: str
    name: str
    type: str
    status: str
    version: int
    stable_version: int
    count: int
    tasks: dict[str, int]
    waiting: str
    submitted_at: str
    updated_at: str
    parent: str
    deployment: DeploymentView | None
    rollout: RolloutView
    spec: JobSpec


class JobVersionView(View, frozen=True):
    """One entry of `GET /jobs/{id}/versions`; `Stable`: its deployment succeeded."""

    version: int
    at: str
    reason: str
    stable: bool
    current: bool
    spec: JobSpec


class JobAccepted(View, frozen=True):
    """The answer to a change of a job: its version now, and what the change does."""

    id: str
    version: int
    message: str


def job_view(job: JobRecord, tasks: Iterable[Task], stopping: Collection[str]) -> JobView:
    """The job as `GET /jobs/{id}` shows it; `tasks` are its tasks, `stopping` the IDs of tasks
    whose stop was asked for (they no longer count as placed)."""
    by_state = {s.label: 0 for s in State}
    tallies: dict[int, list[int]] = {}
    d = job.deployment
    healthy = frozenset(d.healthy) if d else frozenset()
    unhealthy = frozenset(d.unhealthy) if d else frozenset()
    for t in tasks:
        by_state[State(t.state).label] += 1
        tally = tallies.setdefault(t.job_version, [0, 0, 0, 0])
        if t.state in _PLACED and t.id not in stopping:
            tally[0] += 1
            if t.state == State.RUNNING:
                tally[1] += 1
        if t.id in healthy:
            tally[2] += 1
        if t.id in unhealthy:
            tally[3] += 1
    deployment = None
    if d is not None:
        versions = [VersionTally(v, *tallies[v]) for v in sorted(tallies, reverse=True)]
        mine = tallies.get(d.version, [0, 0, 0, 0])
        deployment = DeploymentView(
            version=d.version,
            state=d.state,
            reason=d.reason,
            started_at=d.started_at,
            desired=job.spec.count,
            placed=mine[0],
            healthy=len(d.healthy),
            unhealthy=len(d.unhealthy),
            versions=versions,
        )
    spec = job.spec
    return JobView(
        id=spec.id,
        name=spec.name,
        type=spec.type,
        status=job.status,
        version=job.version,
        stable_version=job.stable,
        count=spec.count,
        tasks=by_state,
        waiting=job.waiting,
        submitted_at=job.submitted_at,
        updated_at=job.updated_at,
        parent=job.parent,
        deployment=deployment,
        rollout=rollout(job, by_state),
        spec=spec,
    )


def rollout(job: JobRecord, tasks: dict[str, int]) -> RolloutView:
    """How the rollout of the job's current version stands, from the job and its tasks by
    state: a batch job is out once complete; a service with a deployment of this version once
    that succeeded (failed: it failed); a system job once nothing waits and it runs somewhere;
    else once its Count runs and nothing waits."""
    spec, d, version = job.spec, job.deployment, job.version

    def said(state: str, reason: str) -> RolloutView:
        return RolloutView(version=version, state=state, reason=reason)

    waiting = tasks.get(State.PENDING.label, 0) + tasks.get(State.SCHEDULED.label, 0)
    running = tasks.get(State.RUNNING.label, 0)
    still = said(RUNNING, (d.reason if d is not None else "") or job.waiting)
    if job.status == STOPPED:
        return said(STOPPED, "the job was stopped")
    if spec.type == "batch":
        return said(DEPLOYED, "complete") if job.status == COMPLETE else still
    if d is not None and d.state == RUNNING:
        return still
    if d is not None and d.version == version:
        if d.state == DEPLOYED:
            return said(DEPLOYED, "deployment successful")
        return said(FAILED, f"deployment {d.state}: {d.reason or 'no reason given'}")
    if spec.type == "system":
        if waiting == 0 and (running > 0 or spec.count == 0):
            return said(DEPLOYED, f"running on {running} node(s)")
        return still
    if waiting == 0 and running == spec.count:
        return said(DEPLOYED, f"{running} running")
    return still


def version_views(job: JobRecord) -> list[JobVersionView]:
    """`GET /jobs/{id}/versions`, newest first."""
    return [
        JobVersionView(
            version=v.version,
            at=v.at,
            reason=v.reason,
            stable=v.version == job.stable,
            current=v.version == job.version,
            spec=v.spec,
        )
        for v in reversed(job.versions)
    ]


def changes(old: JobSpec | None, new: JobSpec) -> list[str]:
    """What `new` changes of `old`, a line per field (`Count: 3 -> 5`, `Task.Env: ...`): the
    diff `orc job plan` shows."""
    if old is None:
        return [f"new {new.type} job {new.id}"]
    a, b = msgspec.to_builtins(old), msgspec.to_builtins(new)
    out: list[str] = []
    for key in dict.fromkeys([*a, *b]):
        if key == "Task":
            ta, tb = a.get(key) or {}, b.get(key) or {}
            for field in dict.fromkeys([*ta, *tb]):
                if ta.get(field) != tb.get(field):
                    out.append(f"Task.{field}: {_said(ta.get(field))} -> {_said(tb.get(field))}")
        elif a.get(key) != b.get(key):
            out.append(f"{key}: {_said(a.get(key))} -> {_said(b.get(key))}")
    return out


def _said(value: object) -> str:
    return "(none)" if value is None else msgspec.json.encode(value).decode()


def touched(
    jobs: Mapping[str, JobRecord], tasks: Mapping[str, Task], events: Iterable[Event]
) -> set[str] | None:
    """The jobs whose reconciliation `events` may change: the jobs they name, the jobs of the
    tasks they are about, and a periodic run's parent (which may wait for it to end); None
    for every job, when a node came or went (a system job's tasks follow the nodes, and a
    job's waiting tasks may fit now). Empty when no job exists: tasks submitted alone cost
    nothing here."""
    if not jobs:
        return set()
    found: set[str] = set()
    for e in events:
        if isinstance(e, NodeJoined | NodeDown):
            return None
        job_id = getattr(e, "job_id", None)
        if isinstance(e, JobRegistered):
            job_id = e.job.id
        elif isinstance(e, TaskSubmitted):
            job_id = e.task.job_id
        elif job_id is None:
            task_id = getattr(e, "task_id", None)
            task = tasks.get(task_id) if isinstance(task_id, str) else None
            job_id = task.job_id if task is not None else None
        if job_id:
            found.add(job_id)
            job = jobs.get(job_id)
            if job is not None and job.parent:
                found.add(job.parent)
    return found
