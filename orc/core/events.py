"""The records of the manager's event log: every fact that changes cluster state.

Each event carries its own time (`at`, RFC 3339) so that `apply` needs no clock. The same
`TaskStarted` and `TaskExited` types are what a worker reports, so a worker's update is logged
as it arrived.

One definition of each event, two encodings:

- **The log** (msgpack) stores the event struct itself, `array_like`: `[tag, field, ...]` in
  the struct's field order, with no field names. Names cost: arrays decode 14-25% faster
  for the small, frequent events (`TaskScheduled`, `TaskStarted`, `TaskExited`), encode
  faster, and make the log 15% smaller (docs/BENCHMARKS.md). msgspec cannot decode a union
  that mixes array and map structs, so every event is an array in the log. The order of an
  event's fields is part of the format: tests/core/test_event_versions.py pins it.
- **The wire** (JSON: `GET /events`, a worker's update stream, `orc replay` listing a record)
  keeps the seed's style: an object with PascalCase keys and `Type`, the event's name. The map
  twin of each event (`wire_type`, made here from the event's own fields) encodes it so;
  `to_wire` and `from_wire` cross between the two. Never JSON-encode an event itself: it
  would come out as an array.

Events are versioned (as the `eventsourcing` library's `class_version` and upcasters):
`class_version` is the version of an event's fields, 1 unless the event says otherwise. The
log tag is the event's name at version 1 and `Name.vN` from version 2 on, so each record says
which version wrote it. To change an event, bump `class_version`, give the class
`tag="Name.vN"`, keep the old version's field names in order as `fields_vM` (array records
of version M hold them so) and write `upcast_vM_vN`, a static method from the old version's
fields (a dict keyed by wire name) to the new one's: `orc.core.upcast` runs the chain when it
meets an older record, and only older records pay for it. docs/replay.md walks through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Union, cast, get_args

import msgspec

from orc.core.jobspec import JobSpec
from orc.core.model import HostPort, NodeInfo, Task, wire_name


class Event(
    msgspec.Struct,
    tag=True,
    tag_field="Type",
    array_like=True,  # in the log: see the module's docstring; on the wire: `to_wire`
    rename=wire_name,
    frozen=True,
    kw_only=True,
    gc=False,  # plain data, never in a cycle: see Task
):
    """Keys are PascalCase and `Type` names the event on the wire; the log holds arrays."""

    # The version of this event's fields (see the module's docstring).
    class_version: ClassVar[int] = 1

    at: str


class NodeJoined(Event, frozen=True):
    """A node registered (or came back, or changed what it offers): it is up."""

    node: NodeInfo


class NodeDown(Event, frozen=True):
    """The manager stopped hearing from a node (no heartbeat for ORC_NODE_TTL): it is down,
    nothing is placed on it, and its tasks were failed (each by its own `TaskFailed`)."""

    node: str
    reason: str


class NodeLogReset(Event, frozen=True):
    """A node's own log starts again at `seq`, below what the manager had applied from it: its
    data directory was wiped or replaced. The manager follows the new log from `seq`; the tasks
    the node no longer knows are reported lost when it reconciles."""

    node: str
    seq: int
    reason: str


class TaskSubmitted(Event, frozen=True):
    """A task was accepted; it is Pending with orc's fields set (`CreatedAt`, `Driver`)."""

    task: Task


class TaskUnplaced(Event, frozen=True):
    """No node can run the task now; it stays Pending and `Error` says why."""

    task_id: str
    reason: str


class TaskScheduled(Event, frozen=True):
    task_id: str
    node: str


class TaskStarted(Event, frozen=True):
    task_id: str
    node: str
    container_id: str = ""
    host_ports: dict[str, list[HostPort]] | None = None
    # The record's sequence number in the worker's own log (0: in-process, not numbered); the
    # manager applies each worker seq once (see `ClusterState.node_seqs`).
    worker_seq: int = 0


class TaskExited(Event, frozen=True):
    """The task's process or container ended (or was never found again).

    It ends Completed when it exited 0 or was stopped on request, Failed otherwise.
    """

    task_id: str
    node: str
    exit_code: int | None = None
    error: str = ""
    stopped: bool = False
    worker_seq: int = 0


class TaskLost(Event, frozen=True):
    """A worker found no trace of a task it was meant to run (say, after its own restart).

    In the manager's log it records that the worker's update was applied; the task's change
    follows as its own event (`TaskFailed`, or `TaskExited` when a stop was requested).
    """

    task_id: str
    node: str
    error: str
    worker_seq: int = 0


class TaskStopRequested(Event, frozen=True):
    task_id: str


class TaskFailed(Event, frozen=True):
    """orc itself gave up on the task: it could not launch it, or lost it."""

    task_id: str
    error: str


class TaskRestarting(Event, frozen=True):
    """The task ended and its restart policy restarts it: it goes back to Scheduled on `node`
    (where it ran) and waits there until `not_before` (the backoff), when `TaskRestarted` says
    it runs again.

    It records the end it replaces (`exit_code`, `reason`): a restarted task goes from Running
    (or, after a launch error, Scheduled) straight back to Scheduled, never through Completed
    or Failed. `restart_count` is the task's new `RestartCount`; `streak` counts restarts in a
    row (the backoff doubles along a streak; a long enough run ends it). `delay` is the backoff
    in seconds, `not_before` = `at` + `delay`: the log holds the deadline, so a manager that
    restarts keeps it.
    """

    task_id: str
    node: str
    reason: str
    restart_count: int
    streak: int
    delay: float
    not_before: str
    exit_code: int | None = None


class TaskRestarted(Event, frozen=True):
    """A restart's backoff is over: the task runs again on `node`, the node it waited on when
    that node can still run it, another one otherwise."""

    task_id: str
    node: str


class TaskHealthy(Event, frozen=True):
    """The first `HealthCheck` of the run that started at `starts_at` passed. A job's
    deployment counts a task with a health check healthy only from here (plus its
    `MinHealthyTime`): running is not enough."""

    task_id: str
    node: str
    starts_at: str


class TaskUnhealthy(Event, frozen=True):
    """`HealthCheck` failed `failures` times in a row on the run that started at `starts_at`.

    With `stop` (its restart policy is not `no`) orc stops the task; its end then counts as a
    failure with `reason`, and the policy decides whether it runs again. Without, the task keeps
    running and `Error` says it is unhealthy.
    """

    task_id: str
    node: str
    reason: str
    failures: int
    stop: bool


class TaskPurged(Event, frozen=True):
    """An ended task is forgotten: ORC_TASK_RETENTION passed since it finished. It leaves the
    state (and `GET /tasks`); its events stay in the log until compaction removes them."""

    task_id: str
    reason: str


class StateDigest(Event, frozen=True):
    """A hash of the manager's state after every event up to `seq`: replay recomputes it, and a
    difference means `apply` no longer does what it did when the log was written."""

    seq: int
    digest: str


class JobRegistered(Event, frozen=True):
    """A job's spec was submitted (created, changed, reverted, or launched by a periodic job):
    it is the job's version `version`. A new task template starts a deployment (a service's
    rolling update); a change of count or name alone does not. `parent` names the periodic
    job that launched this run of it ("" for a job a client submitted)."""

    job: JobSpec
    version: int
    reason: str
    parent: str = ""


class JobScaled(Event, frozen=True):
    """The job's `Count` changed (`PUT /jobs/{id}/scale`); its template, and version, did not."""

    job_id: str
    count: int
    reason: str


class JobStopped(Event, frozen=True):
    """The job was stopped (`DELETE /jobs/{id}`): its tasks are stopped, none is placed."""

    job_id: str
    reason: str


class JobDecided(Event, frozen=True):
    """One decision of the reconciler (`orc.core.reconcile`) about a job, with its reason:
    what `orc replay --job` and `GET /jobs/{id}/history` tell.

    `action` is one of `JOB_ACTIONS`. `place`, `replace`, `stop` and `revert` are followed by
    the events that carry them out (`TaskSubmitted`, `TaskStopRequested`, `JobRegistered`);
    the others change the job's own record (see `orc.core.state`): `wait` says what the job
    waits for ("" once it waits for nothing), `healthy` and `unhealthy` judge a task of the
    deployment, `deployed` and `deployment-failed` end the deployment, `complete` ends a
    batch job, `launch` starts a periodic job's run."""

    job_id: str
    action: str
    reason: str
    task_id: str = ""
    slot: int = -1
    version: int = 0


JOB_ACTIONS = (
    "place",
    "replace",
    "stop",
    "revert",
    "wait",
    "healthy",
    "unhealthy",
    "deployed",
    "deployment-failed",
    "complete",
    "launch",
)

AnyEvent = (
    NodeJoined
    | NodeDown
    | NodeLogReset
    | TaskSubmitted
    | TaskUnplaced
    | TaskScheduled
    | TaskStarted
    | TaskExited
    | TaskStopRequested
    | TaskFailed
    | TaskLost
    | TaskRestarting
    | TaskRestarted
    | TaskHealthy
    | TaskUnhealthy
    | TaskPurged
    | StateDigest
    | JobRegistered
    | JobScaled
    | JobStopped
    | JobDecided
)

JOB_EVENTS = (JobRegistered, JobScaled, JobStopped, JobDecided)

# What a worker reports, in its own log and on its `GET /events` stream.
WorkerUpdate = TaskStarted | TaskExited | TaskLost
WORKER_UPDATES = (TaskStarted, TaskExited, TaskLost)

TASK_EVENTS = (
    TaskSubmitted,
    TaskUnplaced,
    TaskScheduled,
    TaskStarted,
    TaskExited,
    TaskStopRequested,
    TaskFailed,
    TaskLost,
    TaskRestarting,
    TaskRestarted,
    TaskHealthy,
    TaskUnhealthy,
    TaskPurged,
)


ALL_EVENTS: tuple[type[Event], ...] = get_args(AnyEvent)


def log_tag(name: str, version: int) -> str:
    """The tag that starts an event's record in the log: `TaskStarted`, `TaskStarted.v2`."""
    return name if version == 1 else f"{name}.v{version}"


def parse_tag(tag: str) -> tuple[str, int]:
    """`TaskStarted.v2` -> (`TaskStarted`, 2); a bare name is version 1."""
    name, dot, version = tag.rpartition(".v")
    if dot and version.isdigit():
        return name, int(version)
    return tag, 1


def _check_versions(events: tuple[type[Event], ...]) -> None:
    """Fail at import, not years later on an old log: each event's tag says its version, and
    every older version has its field names and an upcaster to the next one."""
    for cls in events:
        version = cls.class_version
        tag = cls.__struct_config__.tag
        if tag != log_tag(cls.__name__, version):
            raise TypeError(
                f"{cls.__name__} is version {version}: its tag must be"
                f" {log_tag(cls.__name__, version)!r}, not {tag!r}"
            )
        for old in range(1, version):
            for needed in (f"fields_v{old}", f"upcast_v{old}_v{old + 1}"):
                if not hasattr(cls, needed):
                    raise TypeError(f"{cls.__name__} is version {version} but has no {needed}")


_check_versions(ALL_EVENTS)


# -- the wire: each event's map twin ---------------------------------------------------------


def _wire_twin(cls: type[Event]) -> type[msgspec.Struct]:
    """A map struct with the event's fields, in the same order: the JSON the event had before
    the log stored arrays (`{"Type": "TaskStarted", "TaskID": ..., "At": ...}`)."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct(
        cls.__name__,
        fields,
        module=__name__,
        tag=cls.__name__,
        tag_field="Type",
        rename=wire_name,
        frozen=True,
        kw_only=True,
        gc=False,
    )


_WIRE: dict[type[Event], type[msgspec.Struct]] = {cls: _wire_twin(cls) for cls in ALL_EVENTS}
_FROM_WIRE: dict[type[msgspec.Struct], type[Event]] = {w: cls for cls, w in _WIRE.items()}

if TYPE_CHECKING:
    # To a type checker a wire twin is a struct; at run time, the union msgspec decodes.
    WireEvent = msgspec.Struct
    WireWorkerUpdate = msgspec.Struct
else:
    WireEvent = Union[tuple(_WIRE[cls] for cls in ALL_EVENTS)]  # noqa: UP007
    WireWorkerUpdate = Union[tuple(_WIRE[cls] for cls in WORKER_UPDATES)]  # noqa: UP007


def wire_type(cls: type[Event]) -> type[msgspec.Struct]:
    """The map twin of an event type: how it goes on the wire (JSON). Made once per type
    (orc's own at import)."""
    wire = _WIRE.get(cls)
    if wire is None:
        wire = _WIRE[cls] = _wire_twin(cls)
        _FROM_WIRE[wire] = cls
    return wire


def to_wire(event: Event) -> msgspec.Struct:
    """The event as the wire carries it: encode this, never the event, with msgspec.json."""
    return wire_type(type(event))(**msgspec.structs.asdict(event))


def from_wire(wire: msgspec.Struct) -> AnyEvent:
    """The event a wire twin (decoded from JSON as `WireEvent`) stands for."""
    return cast("AnyEvent", _FROM_WIRE[type(wire)](**msgspec.structs.asdict(wire)))
