"""What a client may ask for: the bounds of a legal task, defined once, as msgspec types.

The HTTP edge decodes every submission into `TaskEventBody` (the body of `POST /tasks`, on the
manager and on a worker), so msgspec refuses an out-of-bounds value before anything else sees
it, naming the field. The same types check a task that did not come through the edge (one read
from a log an older orc wrote): `spec_problem` converts its spec into `TaskSpec`.

Each bounded type carries a `description` that says what is allowed: it is the text of the
error (`Task.CPU: must be a finite number between 0 and 1024`) and of the API's schema.

Fields orc owns (`State` inside the task, `ContainerID`, `StartsAt`, ...) may be sent, as the
seed's clients do, and are ignored without being looked at (`msgspec.Raw`): orc sets them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from orc.core.model import Task, wire_name

# -- the bounds -------------------------------------------------------------------------------

MAX_CPU = 1024  # cores
MAX_BYTES = 1 << 50  # 1 PiB: memory and disk
MAX_NAME = 256
MAX_ARG = 4096  # one argument, one environment entry
MAX_ARGS = 256  # Cmd entries, Env entries
MAX_PORTS = 64
MAX_IMAGE = 512
MAX_PATH = 1024

_NO_NUL = r"^[^\x00]*$"
# 1-65535, optionally with a protocol: "80", "80/tcp"
_PORT_NUMBER = (
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
_PORT = rf"^{_PORT_NUMBER}(/(tcp|udp|sctp))?$"
_HOST_PORT = rf"^(0|{_PORT_NUMBER})?$"  # "" or "0" lets Docker choose a free port
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*=[^\x00]*$"
_IMAGE = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)

Cores = Annotated[
    float, msgspec.Meta(ge=0, le=MAX_CPU, description=f"a finite number between 0 and {MAX_CPU}")
]
Bytes = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_BYTES, description=f"a whole number of bytes, 0 to {MAX_BYTES}")
]
Name = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_NAME,
        pattern=_NO_NUL,
        description=f"text of at most {MAX_NAME} characters, without NUL",
    ),
]
Arg = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_ARG,
        pattern=_NO_NUL,
        description=f"an argument of at most {MAX_ARG} characters, without NUL",
    ),
]
EnvEntry = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_ARG,
        pattern=_ENV,
        description=f"'NAME=value' (NAME of letters, digits and _), at most {MAX_ARG}"
        " characters, without NUL",
    ),
]
Argv = Annotated[
    list[Arg], msgspec.Meta(max_length=MAX_ARGS, description=f"at most {MAX_ARGS} arguments")
]
EnvList = Annotated[
    list[EnvEntry],
    msgspec.Meta(max_length=MAX_ARGS, description=f"at most {MAX_ARGS} entries"),
]
Port = Annotated[
    str, msgspec.Meta(pattern=_PORT, description="a port 1-65535, optionally '/tcp', '/udp'")
]
HostPortNumber = Annotated[
    str,
    msgspec.Meta(
        pattern=_HOST_PORT,
        description="a host port 1-65535 as a string, or '' or '0' (any free port)",
    ),
]
Empty = Annotated[dict[str, str], msgspec.Meta(max_length=0, description="an empty object {}")]
ExposedPorts = Annotated[
    dict[Port, Empty],
    msgspec.Meta(max_length=MAX_PORTS, description=f"at most {MAX_PORTS} ports"),
]
PortBindings = Annotated[
    dict[Port, HostPortNumber],
    msgspec.Meta(max_length=MAX_PORTS, description=f"at most {MAX_PORTS} ports"),
]
Image = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_IMAGE,
        pattern=f"({_IMAGE})|^$",
        description="an image reference like 'name:tag' (or '' for a process task)",
    ),
]
Path = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_PATH,
        pattern=r"^[^\x00\s]*$",
        description=f"a URL path like '/health' of at most {MAX_PATH} characters",
    ),
]
# A UUID: how long it may be is bounded here; that it is one is checked (and the ID normalised)
# by orc.core.validation, which says "Expected a UUID, got ..." in msgspec's style.
# The pattern is for the API's schema alone (`extra_json_schema`): decoding does not check it,
# so that orc.core.validation says what is wrong in its own words.
_UUID = r"^([0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12})?$"
TaskId = Annotated[
    str, msgspec.Meta(max_length=64, description="a UUID", extra_json_schema={"pattern": _UUID})
]
Policy = Annotated[
    Literal["", "no", "on-failure", "always", "unless-stopped"],
    msgspec.Meta(description="one of '' (no), 'no', 'on-failure', 'always', 'unless-stopped'"),
]
DriverName = Annotated[
    Literal["", "docker", "process"],
    msgspec.Meta(description="one of 'docker', 'process' (or '' to choose by Image and Cmd)"),
]
Time = Annotated[datetime, msgspec.Meta(description="an RFC 3339 time like '2026-01-31T12:00:00Z'")]


class TaskSpec(msgspec.Struct, rename=wire_name, frozen=True, kw_only=True):
    """The fields of a task a client sets, within their bounds."""

    id: TaskId = ""
    name: Name = ""
    image: Image = ""
    cpu: Cores = 0.0
    memory: Bytes = 0
    disk: Bytes = 0
    exposed_ports: ExposedPorts | None = None
    port_bindings: PortBindings | None = None
    restart_policy: Policy = ""
    health_check: Path = ""
    cmd: Argv | None = None
    env: EnvList | None = None
    driver: DriverName = ""


class TaskBody(TaskSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`Task` in a submission: the spec, and orc's own fields accepted and ignored unread."""

    container_id: msgspec.Raw = msgspec.Raw()
    state: msgspec.Raw = msgspec.Raw()
    starts_at: msgspec.Raw = msgspec.Raw()
    finished_at: msgspec.Raw = msgspec.Raw()
    restart_count: msgspec.Raw = msgspec.Raw()
    host_ports: msgspec.Raw = msgspec.Raw()
    created_at: msgspec.Raw = msgspec.Raw()
    updated_at: msgspec.Raw = msgspec.Raw()
    node: msgspec.Raw = msgspec.Raw()
    exit_code: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()
    state_name: msgspec.Raw = msgspec.Raw()
    job_id: msgspec.Raw = msgspec.Raw()
    job_version: msgspec.Raw = msgspec.Raw()
    slot: msgspec.Raw = msgspec.Raw()
    constraints: msgspec.Raw = msgspec.Raw()
    spread: msgspec.Raw = msgspec.Raw()


class TaskEventBody(msgspec.Struct, rename=wire_name, frozen=True, forbid_unknown_fields=True):
    """The body of `POST /tasks`: `State` 1 or 2 runs the task, 3 stops it."""

    id: TaskId = ""
    # the enum is for the API's schema alone: orc.core.validation checks it, in its own words
    state: Annotated[
        int,
        msgspec.Meta(
            ge=-(2**63),
            le=2**63 - 1,
            description="1, 2 or 3",
            extra_json_schema={"enum": [1, 2, 3]},
        ),
    ] = 2
    requested_at: Time | None = None
    task: TaskBody | None = None


SPEC_FIELDS = tuple(f for f in TaskSpec.__struct_fields__)


def to_task(body: TaskSpec) -> Task:
    """The core's Task for a checked spec (orc's own fields at their defaults)."""
    return Task(**{f: getattr(body, f) for f in SPEC_FIELDS})


def spec_problem(task: Task, where: str = "Task") -> str | None:
    """Why `task`'s spec is outside the bounds (in the edge's words, the task named `where`),
    or None: for tasks that did not come through the edge, such as a worker's orders, or those
    in a log an older orc wrote."""
    spec = {wire_name(f): getattr(task, f) for f in SPEC_FIELDS}
    try:
        msgspec.convert(spec, TaskSpec)
    except msgspec.ValidationError as exc:
        return explain(str(exc), TaskSpec, where)
    return None


# -- errors in words --------------------------------------------------------------------------

_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<key>`?key`? in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.(\w+)|\[(?:\d+|\.\.\.)\]")
# msgspec's words stay for these: a value of the wrong type, a field missing or unknown
_PLAIN = re.compile(r"^(Expected `[^`]*`, got|Object missing|Object contains unknown)")


def explain(error: str, root: Any, prefix: str = "") -> str:
    """msgspec's error, said with the bound's own description when the failed value has one:
    `Expected float <= 1024.0 - at $.Task.CPU` -> `Task.CPU: must be a finite number between 0
    and 1024`. Errors of another kind (a wrong type, a missing or unknown field) keep msgspec's
    words, which name the field already: `Expected int, got str - at $.Task.Memory`."""
    m = _AT.match(error)
    path = m.group("path") if m else None
    if m is None or path is None or _PLAIN.match(m.group("what")):
        return error.replace("`", "")
    described = _description(msgspec.inspect.type_info(root), path, key=bool(m.group("key")))
    if described is None:
        return error.replace("`", "")
    where = (prefix + path).lstrip(".").replace("[...]", " (a value)") or "the body"
    return f"{where}{' (a key)' if m.group('key') else ''}: must be {described}"


def _description(info: msgspec.inspect.Type, path: str, key: bool = False) -> str | None:
    """The description of the bounded type at `path` ($-relative, as msgspec writes it), or
    of the keys of the object there."""
    for step in _STEP.finditer(path):
        info = _unwrap(info)
        if step.group(1) is not None:
            if not isinstance(info, msgspec.inspect.StructType):
                return None
            fields = {f.encode_name: f.type for f in info.fields}
            if step.group(1) not in fields:
                return None
            info = fields[step.group(1)]
        elif isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return None
    if key:
        info = _unwrap(info)
        if not isinstance(info, msgspec.inspect.DictType):
            return None
        info = info.key_type
    for candidate in _members(info):
        if isinstance(candidate, msgspec.inspect.Metadata):
            description = (candidate.extra_json_schema or {}).get("description")
            if description:
                return str(description)
    return None


def _members(info: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    if isinstance(info, msgspec.inspect.UnionType):
        return [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
    return [info]


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """Through `X | None` and metadata to the container below."""
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            members = _members(info)
            if len(members) != 1:
                structured = [
                    t
                    for t in members
                    if not isinstance(t, msgspec.inspect.LiteralType | msgspec.inspect.StrType)
                ]
                if len(structured) != 1:
                    return info
                members = structured
            info = members[0]
        else:
            return info
