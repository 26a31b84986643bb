"""Jobs in the cluster state: each job's record (its versions, its deployment) as `apply`
builds it from the log, the names of the tasks a job makes, and the decisions on a client's
job requests (register, scale, stop, revert).

What a job *does* (which tasks to place, stop or replace, and when) is the reconciler's
(`orc.core.reconcile`); this module holds what the reconciler reads.

Everything here is pure: no I/O, no clock (times arrive in the commands).
"""

from __future__ import annotations

import uuid

import msgspec

from orc.core.jobspec import JobSpec, template_of

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


class Deployment(msgspec.Struct, frozen=True, gc=False):
    """A rolling update to `version`: `running` until every slot runs a healthy task of it
    (`successful`), one of its tasks fails or is not healthy in time (`failed`), or the job
    stops or changes again (`cancelled`). `healthy` and `unhealthy` are the tasks of the
    version the reconciler judged (`JobDecided` `healthy` / `unhealthy`)."""

    version: int
    state: str
    started_at: str
    reason: str = ""
    healthy: tuple[str, ...] = ()
    unhealthy: tuple[str, ...] = ()


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
