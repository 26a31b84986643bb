"""The wire model: Task, TaskEvent and State, spelled as the seed's Go structs emit them.

Python names are snake_case; `wire_name` maps them to the seed's PascalCase keys, so the
JSON is byte-compatible with the seed (`ID`, `ContainerID`, `CPU`, ...).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

_ACRONYMS = {"id": "ID", "cpu": "CPU"}


def wire_name(name: str) -> str:
    """`container_id` -> `ContainerID`, `cpu` -> `CPU`, `exposed_ports` -> `ExposedPorts`."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))


class State(enum.IntEnum):
    """Task states, numbered as the seed numbers them on the wire."""

    PENDING = 0
    SCHEDULED = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = -1

    @property
    def label(self) -> str:
        return self.name.capitalize()


class Wire(
    msgspec.Struct, frozen=True, rename=wire_name, forbid_unknown_fields=True, omit_defaults=False
):
    """Base for every JSON body: PascalCase keys, unknown keys rejected, and immutable (a body
    is changed with `msgspec.structs.replace`, so one handed to another actor never changes)."""


PortMap = dict[str, dict[str, Any]]
HostPort = dict[str, str]


class Constraint(
    msgspec.Struct, frozen=True, rename=wire_name, forbid_unknown_fields=True, gc=False
):
    """A rule a node must satisfy to run a task: its attribute `attribute` (a worker's
    `--attr`, or the built-in `node`, the node's name) compared with `value` by `operator`:
    `=`, `!=`, or `regexp` (the value is a regular expression the whole attribute matches).
    A node without the attribute has "" for it. The bounds are `orc.core.jobspec`'s."""

    attribute: str
    value: str = ""
    operator: str = "="


class Task(Wire, frozen=True, gc=False):
    """A task as clients submit it and as orc reports it.

    `gc=False`: a task holds only strings, numbers and plain containers of them, so it can never
    be part of a reference cycle, and the collector need not walk the many thousands that a
    manager keeps (it made decoding a snapshot three times slower).

    Fields a client may set are the spec (see `SPEC_FIELDS`); the rest are owned by orc and
    ignored on submission.
    """

    id: str = ""
    container_id: str = ""
    name: str = ""
    state: State = State.PENDING
    image: str = ""
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    exposed_ports: PortMap | None = None
    port_bindings: dict[str, str] | None = None
    restart_policy: str = ""
    starts_at: str | None = None
    finished_at: str | None = None
    health_check: str = ""
    restart_count: int = 0
    host_ports: dict[str, list[HostPort]] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    cmd: list[str] | None = None
    env: list[str] | None = None
    driver: str = ""
    node: str = ""
    exit_code: int | None = None
    error: str = ""
    state_name: str = ""
    # Set by orc on a task a job made (see `orc.core.jobs`); empty on a task submitted alone.
    # The job, the job version whose template it runs, and its slot (0..Count-1: which of the
    # job's Count replicas it is; -1 for a system job's task, which is keyed by its node).
    job_id: str = ""
    job_version: int = 0
    slot: int = 0
    # Where it may run (the job's `Constraints`, and a system job's pin to its node), and the
    # node attribute its job spreads its tasks over ("" none, "node" each node).
    constraints: tuple[Constraint, ...] | None = None
    spread: str = ""


SPEC_FIELDS = (
    "name",
    "image",
    "cpu",
    "memory",
    "disk",
    "exposed_ports",
    "port_bindings",
    "restart_policy",
    "health_check",
    "cmd",
    "env",
    "driver",
)


def spec_of(task: Task) -> tuple[Any, ...]:
    """What makes two submissions of one ID the same request (for idempotency)."""
    return tuple(getattr(task, f) for f in SPEC_FIELDS)


class TaskEvent(Wire, frozen=True):
    """The body of POST /tasks: what is wanted of a task.

    `state` 1 or 2 asks for the task to run, 3 asks for it to stop (as in the seed).
    """

    id: str = ""
    state: int = int(State.RUNNING)
    requested_at: str | None = None
    task: Task | None = None


class NodeInfo(msgspec.Struct, frozen=True, rename=wire_name, forbid_unknown_fields=True, gc=False):
    """What a worker node offers. Immutable: shared freely between actors."""

    name: str
    address: str
    drivers: tuple[str, ...]
    cores: int = 0
    memory: int = 0
    disk: int = 0
    # What the operator says about the node (`orc worker --attr rack=a`), for `Constraints`
    # and `Spread`; None when it declares nothing.
    attrs: dict[str, str] | None = None


def for_wire(task: Task) -> Task:
    """The task as clients see it: `StateName` filled in."""
    return msgspec.structs.replace(task, state_name=State(task.state).label)
