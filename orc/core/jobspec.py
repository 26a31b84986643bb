"""What a client may ask of a job: its spec and the bounds of each field, defined once, as
msgspec types (as `orc.core.spec` defines a task's).

The HTTP edge decodes `POST /jobs` into `JobSpec`, so a bad spec is refused before anything
else sees it, naming the field (`Job.Count: must be a whole number from 0 to 10000`); the
API's schema is generated from the same types. What msgspec cannot express (a cron
expression that parses, a regular expression that compiles, a driver that fits the task) is
checked by `job_problem`, in the same words.

Durations are seconds (numbers), as everywhere in orc's settings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from croniter import croniter

from orc.core.model import Constraint, wire_name
from orc.core.spec import Name, TaskSpec

MAX_COUNT = 10_000
MAX_CONSTRAINTS = 32
MAX_SECONDS = 366 * 24 * 3600  # a year: the longest interval, delay or deadline
MAX_CRON = 256
JOB_TYPES = ("service", "batch", "system")

# A job ID and a node attribute's name, said once: the edge, the CLI, the API's schema and
# node registration check them with these.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JOB_ID_WORDS = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"

JobId = Annotated[str, msgspec.Meta(pattern=JOB_ID_PATTERN, description=JOB_ID_WORDS)]
Count = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_COUNT, description=f"a whole number from 0 to {MAX_COUNT}")
]
Parallel = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_COUNT, description=f"a whole number from 0 to {MAX_COUNT}")
]
Seconds = Annotated[
    float,
    msgspec.Meta(ge=0, le=MAX_SECONDS, description=f"a number of seconds from 0 to {MAX_SECONDS}"),
]
Attempts = Annotated[
    int, msgspec.Meta(ge=0, le=1000, description="a whole number from 0 (no limit) to 1000")
]
JobType = Annotated[
    Literal["service", "batch", "system"],
    msgspec.Meta(description="one of 'service', 'batch', 'system'"),
]
Attribute = Annotated[
    str,
    msgspec.Meta(
        pattern=ATTRIBUTE_PATTERN,
        description="an attribute name: 1 to 64 letters, digits, '_', '.' or '-'",
    ),
]
Operator = Annotated[
    Literal["=", "!=", "regexp"], msgspec.Meta(description="one of '=', '!=', 'regexp'")
]
Cron = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_CRON,
        description="a cron expression of five fields, like '*/5 * * * *'",
    ),
]


class Spec(msgspec.Struct, rename=wire_name, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the job's parts: PascalCase keys, unknown keys refused, immutable."""


class UpdateSpec(Spec, frozen=True, kw_only=True):
    """How a new version of a service job replaces the old one's tasks (a rolling update)."""

    max_parallel: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_COUNT, description=f"a whole number from 1 to {MAX_COUNT}")
    ] = 1
    # how long a new task must run (and pass its health check) before it counts as healthy
    min_healthy_time: Seconds = 10.0
    # how long after its placement a new task may take to become healthy
    healthy_deadline: Seconds = 300.0
    # on a failed deployment, go back to the last version whose deployment succeeded
    auto_revert: bool = False


class SpreadSpec(Spec, frozen=True, kw_only=True):
    """Spread the job's tasks evenly over the values of a node attribute (`node`: the nodes)."""

    attribute: Attribute = "node"


class ConstraintSpec(Spec, frozen=True, kw_only=True):
    attribute: Attribute
    operator: Operator = "="
    value: Name = ""


class RescheduleSpec(Spec, frozen=True, kw_only=True):
    """When a task of the job failed for good (beyond its restart policy, or with its node), a
    replacement is placed after `delay` seconds, at most `attempts` times per slot in any
    `interval` seconds (`attempts` 0: no limit)."""

    attempts: Attempts = 0
    interval: Seconds = 3600.0
    delay: Seconds = 5.0


class PeriodicSpec(Spec, frozen=True, kw_only=True):
    """Launch a run of the (batch) job at the times `cron` names (UTC); with
    `prohibit_overlap`, not while the previous run is still going."""

    cron: Cron
    prohibit_overlap: bool = False


class TemplateSpec(TaskSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job's task template: a task's fields (`TaskSpec`), an unknown one refused (a typo
    such as `Comand` must not be dropped without a word). Its `ID` is orc's to choose."""


class JobSpec(Spec, frozen=True, kw_only=True):
    """A job: what should be running, and how orc keeps it so.

    `type`: `service` keeps `count` tasks running; `batch` runs until `count` tasks completed
    successfully, at most `parallelism` at once (0: all); `system` runs one task on every
    eligible node. `task` is the template of every task (a task's fields, its ID aside).
    """

    id: JobId
    name: Name = ""
    type: JobType = "service"
    count: Count = 1
    parallelism: Parallel = 0
    task: TemplateSpec
    update: UpdateSpec | None = None
    spread: SpreadSpec | None = None
    constraints: (
        Annotated[
            list[ConstraintSpec],
            msgspec.Meta(
                max_length=MAX_CONSTRAINTS, description=f"at most {MAX_CONSTRAINTS} constraints"
            ),
        ]
        | None
    ) = None
    reschedule: RescheduleSpec | None = None
    periodic: PeriodicSpec | None = None


class ScaleBody(Spec, frozen=True, kw_only=True):
    """The body of `PUT /jobs/{id}/scale`."""

    count: Count


class RevertBody(Spec, frozen=True, kw_only=True):
    """The body of `POST /jobs/{id}/revert`."""

    version: Annotated[int, msgspec.Meta(ge=0, description="a version number of the job")]


DEFAULT_UPDATE = UpdateSpec()
DEFAULT_RESCHEDULE = {
    # a service keeps trying; a batch task that failed is tried again once a day
    "service": RescheduleSpec(attempts=0, interval=3600.0, delay=5.0),
    "batch": RescheduleSpec(attempts=1, interval=86400.0, delay=5.0),
    "system": RescheduleSpec(attempts=0, interval=3600.0, delay=5.0),
}


def job_problem(spec: JobSpec) -> str | None:
    """What the types cannot say is wrong with a decoded spec, in the edge's words, or None."""
    if spec.task.id:
        return "Job.Task.ID: must be empty: orc names the tasks of a job"
    if spec.periodic is not None:
        if spec.type != "batch":
            return "Job.Periodic: only a batch job may be periodic (set Type to 'batch')"
        if len(spec.periodic.cron.split()) != 5 or not croniter.is_valid(spec.periodic.cron):
            return (
                f"Job.Periodic.Cron: {spec.periodic.cron!r} is not a cron expression of five"
                " fields, like '*/5 * * * *'"
            )
    for i, c in enumerate(spec.constraints or ()):
        if c.operator == "regexp":
            try:
                re.compile(c.value)
            except re.error as exc:
                return f"Job.Constraints[{i}].Value: not a regular expression: {exc}"
    if spec.type == "system" and spec.count not in (0, 1):
        # a system job's count is the number of eligible nodes; 0 stops it
        return "Job.Count: a system job runs one task per node: leave Count at 1 (or 0 to stop)"
    return None


def constraints_of(spec: JobSpec) -> tuple[Constraint, ...] | None:
    """The job's constraints as its tasks carry them (the core's `Constraint`)."""
    if not spec.constraints:
        return None
    return tuple(Constraint(c.attribute, c.value, c.operator) for c in spec.constraints)


def reschedule_of(spec: JobSpec) -> RescheduleSpec:
    return spec.reschedule or DEFAULT_RESCHEDULE[spec.type]


def update_of(spec: JobSpec) -> UpdateSpec:
    return spec.update or DEFAULT_UPDATE


def template_of(spec: JobSpec) -> tuple[object, ...]:
    """What makes two versions' tasks the same: a task runs an older version's template as
    long as this is equal (a scale or a rename replaces nothing)."""
    return (spec.task, spec.constraints, spec.spread, spec.type)
