"""What submitting a job spec would do, without doing it (`POST /jobs/{id}/plan`, `orc job
plan`): the diff against the running version, the reconciler's decisions, and where the tasks
it would place would go, each with its reason.

The decisions come from the same reconciler the manager runs (`orc.core.reconcile.plan`, on a
copy of the state) and the placements from the same placement functions the scheduler uses
(`orc.core.placement.choose`, over the copy's allocations), so a plan shows what the live
cluster would do now; it can differ later only because the cluster changed meanwhile.
"""

from __future__ import annotations

from msgspec.structs import replace

from orc.core.events import JobDecided, TaskSubmitted
from orc.core.jobs import View, changes
from orc.core.jobspec import JobSpec, template_of
from orc.core.model import State
from orc.core.placement import EMPTY, Allocation, allocations, choose, need_of
from orc.core.reconcile import plan
from orc.core.state import ClusterState


class PlannedStep(View, frozen=True):
    """One decision the reconciler would make (as its `JobDecided` event would say it)."""

    action: str
    reason: str
    task_id: str
    slot: int
    version: int


class PlannedPlacement(View, frozen=True):
    """Where a task the plan would create would run: `Node`, or "" with the reason none can."""

    task_id: str
    slot: int
    node: str
    reason: str


class JobPlan(View, frozen=True):
    """The dry run of a job spec. `Version` is the version it would become (the current one
    when nothing changes); `RollingUpdate`: the template changes, so a deployment would
    replace the tasks of older versions."""

    id: str
    version: int
    created: bool
    changed: bool
    rolling_update: bool
    changes: list[str]
    steps: list[PlannedStep]
    placements: list[PlannedPlacement]


def dry_run(state: ClusterState, spec: JobSpec, now: str, policy: str) -> JobPlan:
    """The plan of submitting `spec` (checked by the edge) at `now`, placing with `policy`
    (ORC_SCHEDULER). `state` is not changed."""
    job = state.jobs.get(spec.id)
    old = job.spec if job is not None else None
    changed = job is None or job.spec != spec or job.status != "running"
    after, done = plan(state, spec, now)
    steps = [
        PlannedStep(e.action, e.reason, e.task_id, e.slot, e.version)
        for e in done.events
        if isinstance(e, JobDecided)
    ]
    new = [e.task for e in done.events if isinstance(e, TaskSubmitted)]
    placements: list[PlannedPlacement] = []
    nodes = list(after.up_nodes())
    alloc = allocations(after.tasks.values())
    for task in new:
        choice = choose(policy, task, nodes, alloc)
        placements.append(PlannedPlacement(task.id, task.slot, choice.node, choice.reason))
        if choice.node:  # the plan's next task sees this one placed, as the scheduler would
            here = replace(task, state=State.SCHEDULED, node=choice.node)
            a, need = alloc.get(choice.node, EMPTY), need_of(task)
            alloc[choice.node] = Allocation(
                a.cpu + need.cpu, a.memory + need.memory, a.disk + need.disk, a.tasks + 1
            )
            after.tasks[here.id] = here
    rolling = (
        job is not None and spec.type == "service" and template_of(spec) != template_of(job.spec)
    )
    version = (job.version + 1 if changed else job.version) if job is not None else 0
    return JobPlan(
        id=spec.id,
        version=version,
        created=job is None,
        changed=changed,
        rolling_update=rolling,
        changes=changes(old, spec) if changed else [],
        steps=steps,
        placements=placements,
    )
