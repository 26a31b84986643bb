"""What submitting a job spec would do, without doing it (`POST /jobs/{id}/plan`, `orc job
plan`): the diff against the running version, the reconciler's decisions, and where the tasks
it would place would go, each with its reason.

The decisions come from the same reconciler the manager runs (`orc.core.reconcile.plan`, on a
copy of the state) and the placements from the same placement functions the scheduler uses
(`orc.core.placement.Placer`, over the copy's placed tasks), so a plan shows what the live
cluster would do now; it can differ later only because the cluster changed meanwhile.
"""

from __future__ import annotations

from orc.core.events import JobDecided, TaskSubmitted
from orc.core.jobs import View, changes, rolls
from orc.core.jobspec import JobSpec
from orc.core.placement import PLACED_STATES, Placer
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
    after, done = plan(state, spec, now)
    version = after.jobs[spec.id].version
    changed = job is None or version != job.version  # `plan` registers as `decide.register`
    steps = [
        PlannedStep(e.action, e.reason, e.task_id, e.slot, e.version)
        for e in done.events
        if isinstance(e, JobDecided)
    ]
    # the scheduler's own index over the copy: its policy, constraints and spread
    active = (t for t in after.tasks.values() if t.state in PLACED_STATES)
    placer = Placer(policy, after.up_nodes(), active)
    placements = []
    for e in done.events:
        if isinstance(e, TaskSubmitted):
            choice = placer.place(e.task)
            placements.append(PlannedPlacement(e.task.id, e.task.slot, choice.node, choice.reason))
    return JobPlan(
        id=spec.id,
        version=version,
        created=job is None,
        changed=changed,
        rolling_update=job is not None and rolls(job.spec, spec),
        changes=changes(job.spec if job else None, spec) if changed else [],
        steps=steps,
        placements=placements,
    )
