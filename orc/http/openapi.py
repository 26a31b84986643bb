"""`GET /openapi.json`: an OpenAPI 3.1 document of the manager's or a worker's API, generated
from the msgspec types the code decodes and encodes with (`msgspec.json.schema_components`).

The route table below is the one place that says, per route, what it takes and every status it
answers with what body. An app's document holds the table's routes that the app registered (an
`orc manager` has `POST /nodes`, an `orc` does not; an `orc worker` has `GET /events`, a worker
inside `orc` does not), and tests/http/test_openapi.py checks both ways that the table and the
apps' routes are the same set, so neither can drift: a new route without its row fails there.

Bodies orc sends carry every key (msgspec writes defaults too), so their schemas require every
key, and a response missing one breaks the document; a body a client sends may leave out what
has a default. A type that is both (a `Task` inside a worker's `POST /orders`) gets a second
component, `<Name>Input`, for the request.
"""

from __future__ import annotations

import functools
import logging
import re
import types
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

import msgspec
from quart import Response
from quart_trio import QuartTrio

from orc.core.dryrun import JobPlan
from orc.core.events import WireEvent, WireWorkerUpdate
from orc.core.jobs import JobAccepted, JobVersionView, JobView
from orc.core.jobspec import JOB_ID_PATTERN, JOB_ID_WORDS, JobSpec, RevertBody, ScaleBody
from orc.core.messages import OrderResults, Orders
from orc.core.model import NodeInfo, Task, TaskEvent
from orc.core.nodeview import NodeView
from orc.core.spec import TaskEventBody
from orc.ha.registry import ClusterView
from orc.http.metrics import route_template
from orc.http.wire import (
    Error,
    EventsError,
    Logs,
    OrdersTaken,
    Registered,
    Standby,
    Stats,
    WorkerStats,
    leader_only,
)
from orc.nodes.base import StreamLine
from orc.replay.story import History, JobStory

log = logging.getLogger("orc.http")

OPENAPI = "3.1.0"
JSON = "application/json"
NDJSON = "application/x-ndjson"
TEXT = "text/plain"
_REF = "#/components/schemas/{name}"
# Paths that are not API: the dashboard's static files (orc/ui), served at /ui/.
NOT_API = ("/ui",)
# Methods a route answers without declaring them: HEAD (werkzeug adds it to every GET) and
# OPTIONS (orc turns automatic OPTIONS off).
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})


class Answer(NamedTuple):
    """One status of an operation: why it is given, and its body (a msgspec type; None: no
    body). `retry` says a `Retry-After` header comes with it."""

    description: str
    body: Any = None
    media: str = JSON
    retry: bool = False
    location: bool = False  # a `Location` header comes with it


class Query(NamedTuple):
    name: str
    schema: dict[str, Any]
    description: str


class Op(NamedTuple):
    method: str
    path: str  # an OpenAPI template; its placeholders are the Quart rule's (`{task_id}`)
    summary: str
    answers: dict[int, Answer]
    body: Any = None  # the request body's msgspec type
    query: tuple[Query, ...] = ()
    description: str = ""


# -- answers every route may give -------------------------------------------------------------

UNAUTHORIZED = Answer(
    "`ORC_TOKEN` is set and the request does not carry `Authorization: Bearer <token>`", Error
)
UNAVAILABLE = Answer(
    "orc could not answer now (an actor did not answer in time, or the event log cannot be"
    " written): nothing was changed; retry after `Retry-After` seconds",
    Error,
    retry=True,
)
BAD_ID = Answer("the path's task ID is not a UUID", Error)
NO_TASK = Answer("no task with this ID (or the path names no route)", Error)
OTHER_ROUTE = Answer(
    "the task ID holds a `/`, which made the path another route's that does not take this method",
    Error,
)
TOO_LARGE = Answer("the body is larger than `ORC_MAX_BODY` bytes", Error)
BAD_BODY = Answer(
    "malformed JSON, a wrong type, an unknown key or a value out of its bounds: the message"
    " names the field and what is allowed",
    Error,
)
TASK_ID = {"task_id": "the task's ID, a UUID"}
# Each path parameter: its description, and its schema (anything else is answered 400).
PATH_PARAMETERS = {
    "task_id": (TASK_ID["task_id"], {"type": "string", "format": "uuid"}),
    "job_id": (f"the job's ID: {JOB_ID_WORDS}", {"type": "string", "pattern": JOB_ID_PATTERN}),
}

BAD_JOB_ID = Answer("the path's job ID is not a job ID", Error)
NO_JOB = Answer("no job with this ID (or the path names no route)", Error)
JOB_OTHER_ROUTE = Answer(
    "the job ID holds a `/`, which made the path another route's that does not take this method",
    Error,
)
BAD_JOB = Answer(
    "malformed JSON, a wrong type, an unknown key, a value out of its bounds, or a rule between"
    " fields broken (a periodic job that is not a batch, a cron or regular expression that does"
    " not parse, a task with neither Image nor Cmd, a Count over `ORC_MAX_TASKS`): the message"
    " names the field and what is allowed",
    Error,
)
JOB_ROUTE_ANSWERS = {400: BAD_JOB_ID, 404: NO_JOB, 405: JOB_OTHER_ROUTE, 503: UNAVAILABLE}

EVENTS_QUERY = (
    Query(
        "after",
        {"type": "integer", "minimum": 0, "default": 0},
        "start after this sequence number (0: from the beginning)",
    ),
    Query("task", {"type": "string"}, "only events about this task (its ID)"),
    Query(
        "type",
        {"type": "array", "items": {"type": "string"}},
        "only events of these types (repeat the parameter for several)",
    ),
)
EVENTS_ANSWERS = {
    200: Answer(
        "the log's events after `after`, one JSON object a line, then each new one as it is"
        " logged, until the client goes; while idle, a heartbeat line"
        ' `{"Heartbeat": true, "Seq": last}`. The schema is that of one line',
        None,  # set per node
        NDJSON,
    ),
    400: Answer(
        "`after` is not a number or is past the log's end, or a `type` is unknown", EventsError
    ),
    410: Answer("`after` is older than what compaction kept: `EarliestSeq` says", EventsError),
    503: Answer("`ORC_MAX_STREAMS` streams are open already", Error, retry=True),
}


def _events(line: Any, summary: str) -> Op:
    answers = dict(EVENTS_ANSWERS)
    answers[200] = answers[200]._replace(body=line)
    return Op("GET", "/events", summary, answers, query=EVENTS_QUERY)


METRICS = Op(
    "GET",
    "/metrics",
    "This node's metrics, in Prometheus' text format",
    {200: Answer("the metrics (see docs/operations.md, Metrics)", str, TEXT), 503: UNAVAILABLE},
)
DOCUMENT = Op(
    "GET",
    "/openapi.json",
    "This document",
    {200: Answer("the OpenAPI 3.1 document of this node's API", dict[str, Any])},
)

# -- the manager's jobs (orc/http/jobs.py, docs/jobs.md) ------------------------------------

JOBS: tuple[Op, ...] = (
    Op(
        "POST",
        "/jobs",
        "Submit a job, or a new version of one",
        {
            201: Answer("a new job, version 0, in the durable event log", JobAccepted),
            200: Answer(
                "a new version of the job (a rolling update when its template changed), or"
                " `unchanged` when the spec is the current version's",
                JobAccepted,
            ),
            400: BAD_JOB,
            413: TOO_LARGE,
            503: UNAVAILABLE,
        },
        body=JobSpec,
        description="An answer is sent only once the job's new version is in the event log.",
    ),
    Op(
        "GET",
        "/jobs",
        "Every job, by ID",
        {200: Answer("the jobs", list[JobView]), 503: UNAVAILABLE},
    ),
    Op(
        "GET",
        "/jobs/{job_id}",
        "One job: its tasks by state, what it waits for, its deployment",
        {200: Answer("the job", JobView), **JOB_ROUTE_ANSWERS},
    ),
    Op(
        "DELETE",
        "/jobs/{job_id}",
        "Stop a job: its tasks are stopped; submitting it again starts it again",
        {200: Answer("the job is stopping (or was stopped)", JobAccepted), **JOB_ROUTE_ANSWERS},
    ),
    Op(
        "PUT",
        "/jobs/{job_id}/scale",
        "Change how many tasks a job runs (not a new version of its spec)",
        {
            200: Answer("scaled (or at that count already)", JobAccepted),
            **JOB_ROUTE_ANSWERS,
            400: Answer(
                "the job ID or the body is bad, or the job is a system or periodic job", Error
            ),
            413: TOO_LARGE,
        },
        body=ScaleBody,
    ),
    Op(
        "GET",
        "/jobs/{job_id}/versions",
        "A job's versions, newest first",
        {200: Answer("its versions", list[JobVersionView]), **JOB_ROUTE_ANSWERS},
    ),
    Op(
        "POST",
        "/jobs/{job_id}/revert",
        "Run an earlier version's spec again, as a new version",
        {
            200: Answer("the new version (or the version is the current one)", JobAccepted),
            **JOB_ROUTE_ANSWERS,
            400: Answer("the job ID or the body is bad", Error),
            404: Answer("no job with this ID, or it has no such version", Error),
            413: TOO_LARGE,
        },
        body=RevertBody,
    ),
    Op(
        "POST",
        "/jobs/{job_id}/plan",
        "What submitting this spec would do, without doing it",
        {
            200: Answer(
                "the diff against the current version, the reconciler's steps, and where each"
                " new task would be placed (or why it cannot be)",
                JobPlan,
            ),
            **JOB_ROUTE_ANSWERS,
            400: Answer(
                "the job ID is bad, the body is bad as in `POST /jobs`, or its ID is not the"
                " path's",
                Error,
            ),
            404: Answer("the path names no route", Error),
            413: TOO_LARGE,
        },
        body=JobSpec,
    ),
)

# -- the manager ------------------------------------------------------------------------------

MANAGER: tuple[Op, ...] = (
    Op(
        "POST",
        "/tasks",
        "Submit a task (State 1 or 2), or stop one (State 3)",
        {
            201: Answer(
                "the task is in the durable event log, Pending: the event as recorded", TaskEvent
            ),
            200: Answer(
                "a task with this ID and the same spec exists: it, as it is now", TaskEvent
            ),
            204: Answer("State 3: the task is being stopped (or had ended)"),
            400: BAD_BODY,
            404: Answer("State 3 for a task orc does not know", Error),
            409: Answer("a task with this ID exists with a different spec", Error),
            413: TOO_LARGE,
            429: Answer("`ORC_MAX_PENDING` tasks already wait to be placed", Error, retry=True),
            503: Answer(
                "the event log cannot be written, an actor did not answer, or the manager holds"
                " `ORC_MAX_TASKS` tasks",
                Error,
                retry=True,
            ),
        },
        body=TaskEventBody,
        description="A `201` is sent only once the task is in the durable event log.",
    ),
    Op(
        "GET",
        "/tasks",
        "Every task the manager knows (or one job's)",
        {
            200: Answer("the tasks", list[Task]),
            400: Answer("`job` is not a job ID", Error),
            503: UNAVAILABLE,
        },
        query=(
            Query(
                "job",
                {"type": "string", "pattern": JOB_ID_PATTERN},
                "only the tasks of this job (none for a job orc does not know)",
            ),
        ),
    ),
    Op(
        "GET",
        "/tasks/{task_id}",
        "One task",
        {
            200: Answer("the task", Task),
            400: BAD_ID,
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: UNAVAILABLE,
        },
    ),
    Op(
        "DELETE",
        "/tasks/{task_id}",
        "Stop a task: it ends Completed (Failed if it was never placed)",
        {
            204: Answer("the task is being stopped (or had ended)"),
            400: BAD_ID,
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: UNAVAILABLE,
        },
    ),
    Op(
        "GET",
        "/tasks/{task_id}/logs",
        "A task's output, from the worker that ran it",
        {
            200: Answer("its stdout and stderr", Logs),
            400: BAD_ID,
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: UNAVAILABLE,
        },
    ),
    Op(
        "GET",
        "/tasks/{task_id}/history",
        "A task's life as the event log tells it, with the time spent in each state",
        {
            200: Answer("its events, the periods in each state and their totals", History),
            400: BAD_ID,
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: Answer("the log could not be read, or an actor did not answer", Error, retry=True),
        },
    ),
    Op(
        "GET",
        "/jobs/{job_id}/history",
        "A job's story as the event log tells it: its versions, every decision and its reason",
        {
            200: Answer(
                "the job now, its versions, every event about it or its tasks (each decision of"
                " the reconciler with its reason), each task's fate, and a periodic job's runs",
                JobStory,
            ),
            **JOB_ROUTE_ANSWERS,
            503: Answer("the log could not be read, or an actor did not answer", Error, retry=True),
        },
    ),
    Op(
        "GET",
        "/stats",
        "A summary of the cluster",
        {200: Answer("tasks by state, nodes, the log's last seq", Stats), 503: UNAVAILABLE},
    ),
    Op(
        "GET",
        "/nodes",
        "The worker nodes: capacity, what is allocated, health",
        {200: Answer("the nodes", list[NodeView]), 503: UNAVAILABLE},
    ),
    Op(
        "POST",
        "/nodes",
        "A worker registers, and heartbeats (`orc manager` only)",
        {
            200: Answer("registered (or heard from again)", Registered),
            400: Answer("malformed: unknown keys, a bad name or address, an unknown driver", Error),
            409: Answer("a node of that name is up at another address", Error),
            413: TOO_LARGE,
            503: UNAVAILABLE,
        },
        body=NodeInfo,
    ),
    Op(
        "GET",
        "/cluster",
        "Who leads, every manager with its role and log position, and the etcd behind them",
        {
            200: Answer(
                "the cluster as etcd says it now (a single manager with its file log: itself"
                " alone, the leader, and `Etcd` null)",
                ClusterView,
            ),
            503: Answer("etcd could not answer", Error, retry=True),
        },
    ),
    *JOBS,
    _events(StreamLine[WireEvent], "The event log as NDJSON, from any sequence number, then live"),
    METRICS,
    DOCUMENT,
)

# A standby among highly available managers (docs/ha.md) sends every write to the leader.
STANDBY = Answer(
    "this manager is a standby (`orc manager --etcd`): send the same request to the leader,"
    " at `Location` (`curl -L` and most clients follow it, body and all); a 503 with"
    " `Retry-After` while no manager leads",
    Standby,
    location=True,
)

# -- a worker ---------------------------------------------------------------------------------

WORKER: tuple[Op, ...] = (
    Op(
        "POST",
        "/tasks",
        "Run a task on this worker directly, as the seed's worker does (State 3: stop it)",
        {
            201: Answer("the task was handed to this worker: the event", TaskEvent),
            204: Answer("State 3: the task is being stopped"),
            400: BAD_BODY,
            404: Answer("State 3 for a task this worker does not know", Error),
            413: TOO_LARGE,
            503: UNAVAILABLE,
        },
        body=TaskEventBody,
    ),
    Op(
        "GET",
        "/tasks",
        "The tasks this worker knows, in its own view",
        {200: Answer("the tasks", list[Task]), 503: UNAVAILABLE},
    ),
    Op(
        "DELETE",
        "/tasks/{task_id}",
        "Stop a task on this worker",
        {
            204: Answer("the task is being stopped"),
            400: BAD_ID,
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: UNAVAILABLE,
        },
    ),
    Op(
        "GET",
        "/tasks/{task_id}/logs",
        "A task's output, kept after it ends",
        {
            200: Answer("its stdout and stderr", Logs),
            400: Answer("the task ID is not a UUID, or `driver` is unknown", Error),
            404: NO_TASK,
            405: OTHER_ROUTE,
            503: UNAVAILABLE,
        },
        query=(
            Query(
                "driver",
                {"type": "string", "enum": ["", "docker", "process"]},
                "the task's driver (a manager sends it): finds the output of a task this worker"
                " no longer lists since it restarted",
            ),
        ),
    ),
    Op(
        "POST",
        "/orders",
        "Many orders in one request, carried out in order (how a manager's proxy hands them over)",
        {
            200: Answer(
                "one result per order, with the status its own route would answer", OrderResults
            ),
            400: Answer("one order is bad (the message names it): none of the batch ran", Error),
            413: TOO_LARGE,
            503: UNAVAILABLE,
        },
        body=Orders,
    ),
    Op(
        "GET",
        "/orders",
        "The POST /orders requests taken since start, and their orders",
        {200: Answer("the counts", OrdersTaken)},
    ),
    Op(
        "GET",
        "/stats",
        "This machine's statistics, in the seed's shape",
        {
            200: Answer("memory (kB), disk, CPU times, load, running tasks", WorkerStats),
            503: UNAVAILABLE,
        },
    ),
    _events(StreamLine[WireWorkerUpdate], "This worker's own update log (`orc worker` only)"),
    Op(
        "GET",
        "/node",
        "What this worker offers (`orc worker` only)",
        {200: Answer("its NodeInfo", NodeInfo)},
    ),
    METRICS,
    DOCUMENT,
)

TABLES = {"manager": MANAGER, "worker": WORKER}

# Component names for types msgspec would name after their generic parameters.
NAMES: dict[Any, str] = {
    StreamLine[WireEvent]: "EventLine",
    StreamLine[WireWorkerUpdate]: "WorkerUpdateLine",
}
# What a client needs to know of a type, where its docstring speaks to orc's developers.
DESCRIPTIONS = {
    "Task": "A task as orc reports it: the client's spec, and the fields orc sets.",
    "TaskEvent": "What was asked of a task (State 1 or 2: run it, 3: stop it), as recorded.",
    "TaskEventBody": "The body of `POST /tasks`: State 1 or 2 runs the task, 3 stops it.",
    "TaskBody": (
        "A task in a submission: the fields a client sets, within their bounds. The fields orc"
        " sets (State, Node, ...) may be sent and are ignored unread."
    ),
    "NodeInfo": "What a worker node offers.",
    "NodeInfoInput": "What a worker node offers, as it registers (`POST /nodes`).",
    "TaskInput": "A task in a worker's order (`RunTask`, `Reconcile`).",
    "NodeView": "A node as the manager sees it: capacity, allocation, health.",
    "EventLine": (
        "A line of `GET /events`: an event with its sequence number, or a heartbeat"
        " (`Heartbeat` true, `Seq` the log's last)."
    ),
    "WorkerUpdateLine": (
        "A line of a worker's `GET /events`: an update with its sequence number, or a heartbeat."
    ),
}


# -- the document -----------------------------------------------------------------------------


def app_routes(app: QuartTrio) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route `app` registered, but the dashboard's files."""
    routes = set()
    for rule in app.url_map.iter_rules():
        path = route_template(rule.rule)
        if any(path == p or path.startswith(p + "/") for p in NOT_API):
            continue
        for method in (rule.methods or set()) - IMPLICIT_METHODS:
            routes.add((method, path))
    return routes


def document(role: str, routes: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The document of a `role` ("manager" or "worker") node: the table's routes among `routes`
    (all of them when None)."""
    ops = [op for op in TABLES[role] if routes is None or (op.method, op.path) in routes]
    components, response_refs, request_refs = _components(ops, role)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(
            op, response_refs, request_refs, role
        )
    return {
        "openapi": OPENAPI,
        "info": {
            "title": f"orc {role}",
            "version": "1",
            "description": (
                f"The HTTP API of an orc {role} node (docs/API.md). JSON keys are PascalCase;"
                ' times are RFC 3339 strings or null. Every error is `{"message": ...}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`ORC_TOKEN`, when the node has one set",
                }
            },
        },
        # the token only when the node has one set: either requirement is met
        "security": [{"token": []}, {}],
    }


def _operation(
    op: Op, responses: dict[Any, Any], requests: dict[Any, Any], role: str
) -> dict[str, Any]:
    answers = {**op.answers, 401: UNAUTHORIZED, **_redirects(op, role)}
    out: dict[str, Any] = {
        "operationId": op.method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", op.path).rstrip("_"),
        "summary": op.summary,
        "responses": {
            str(status): _answer(answers[status], responses) for status in sorted(answers)
        },
    }
    if op.description:
        out["description"] = op.description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            # anything else is answered 400 (the schema says what works)
            "schema": schema,
            "description": text,
        }
        for name, (text, schema) in PATH_PARAMETERS.items()
        if "{" + name + "}" in op.path
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "schema": q.schema,
            "description": q.description,
        }
        for q in op.query
    ]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": requests[op.body]}}}
    return out


def _redirects(op: Op, role: str) -> dict[int, Answer]:
    """A manager's writes, and the reads only the leader can answer (a task's logs come from
    its worker), may be sent on to the leader: `307`."""
    if role == "manager" and leader_only(op.method, op.path):
        return {307: STANDBY}
    return {}


def _answer(answer: Answer, schemas: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.body is not None:
        out["content"] = {answer.media: {"schema": schemas[answer.body]}}
    if answer.retry:
        out["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "string"},
            }
        }
    if answer.location:
        out["headers"] = {
            "Location": {
                "description": "the same request's URL on the leader",
                "schema": {"type": "string"},
            }
        }
    return out


def _components(ops: list[Op], role: str) -> tuple[dict[str, Any], dict[Any, Any], dict[Any, Any]]:
    """The components, and the schema of each response and each request body type."""
    answered = _unique(
        a.body
        for op in ops
        for a in (*op.answers.values(), *_redirects(op, role).values())
        if a.body is not None
    )
    bodies = _unique(op.body for op in ops if op.body is not None)
    asked = [_schema_twin(body) for body in bodies]
    schemas, components = msgspec.json.schema_components(answered, ref_template=_REF)
    _require_all(components, answered)
    named = {
        _ref_name(schema): NAMES[t]
        for t, schema in zip(answered, schemas, strict=True)
        if t in NAMES
    }
    in_schemas, in_components = msgspec.json.schema_components(asked, ref_template=_REF)
    inputs = {
        name: f"{name}Input"
        for name, schema in in_components.items()
        if name in components and components[name] != schema
    }
    merged = _renamed({named.get(n, n): s for n, s in components.items()}, named)
    merged.update(_renamed({inputs.get(n, n): s for n, s in in_components.items()}, inputs))
    for name, text in DESCRIPTIONS.items():
        if name in merged:
            merged[name]["description"] = text
    if "TaskEventBody" in merged:
        # What the edge's checks (orc.core.validation) require beyond the types: a Task, and
        # in it an Image or a Cmd.
        submission = merged["TaskEventBody"]
        submission["required"] = ["Task"]
        submission["properties"]["Task"] = {"$ref": _REF.format(name="TaskBody")}
        merged["TaskBody"]["anyOf"] = IMAGE_OR_CMD
    if "TaskSpecInput" in merged:
        # a job's template: as a task's (an Image or a Cmd), and its ID left to orc
        template = merged["TaskSpecInput"]
        template["anyOf"] = IMAGE_OR_CMD
        template["properties"]["ID"] = {
            **template["properties"]["ID"],
            "maxLength": 0,
            "description": "leave it out: orc names the tasks of a job",
        }
    response_schemas = dict(zip(answered, _renamed(schemas, named), strict=True))
    request_schemas = dict(zip(bodies, _renamed(in_schemas, inputs), strict=True))
    return dict(sorted(merged.items())), response_schemas, request_schemas


IMAGE_OR_CMD = [
    {"required": ["Image"], "properties": {"Image": {"minLength": 1}}},
    {"required": ["Cmd"], "properties": {"Cmd": {"type": "array", "minItems": 1}}},
]


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[1]


def _renamed(obj: Any, renames: dict[str, str]) -> Any:
    """`obj` with every `$ref` (and discriminator mapping) to a renamed component renamed."""
    if not renames:
        return obj
    prefix = _REF.format(name="")
    if isinstance(obj, dict):
        return {k: _renamed(v, renames) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_renamed(v, renames) for v in obj)
    if isinstance(obj, str) and obj.startswith(prefix) and obj[len(prefix) :] in renames:
        return prefix + renames[obj[len(prefix) :]]
    return obj


def _require_all(components: dict[str, Any], types_: list[Any]) -> None:
    """Every key of a struct orc sends is required: msgspec writes defaults too (unless the
    struct omits them)."""
    for cls in _structs(types_):
        schema = components.get(cls.__name__)
        if schema is None or cls.__struct_config__.omit_defaults or "properties" not in schema:
            continue
        schema["required"] = list(schema["properties"])


def _structs(types_: list[Any]) -> Iterator[type[msgspec.Struct]]:
    """Every struct type in `types_`, however deep."""
    seen: set[Any] = set()
    stack = list(msgspec.inspect.multi_type_info(types_))
    while stack:
        info = stack.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                continue
            seen.add(info.cls)
            yield info.cls
            stack.extend(f.type for f in info.fields)
        elif isinstance(info, msgspec.inspect.Metadata):
            stack.append(info.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            stack.extend(info.types)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
            stack.append(info.item_type)
        elif isinstance(info, msgspec.inspect.TupleType):
            stack.extend(info.item_types)
        elif isinstance(info, msgspec.inspect.DictType):
            stack.append(info.value_type)


# `msgspec.Raw` has no schema, and a field of it takes any JSON value (orc's own fields in a
# submission, accepted and ignored unread): in the document, such a field is any value.
IGNORED = Annotated[Any, msgspec.Meta(description="set by orc; accepted and ignored unread")]


@functools.cache
def _schema_twin(t: Any) -> Any:
    """`t` for the schema: a struct with `msgspec.Raw` fields is copied with those fields
    taking any value (same names, keys and config), and so is every struct inside it."""
    if isinstance(t, type) and issubclass(t, msgspec.Struct) and _has_raw(t):
        fields: list[tuple[str, Any, Any]] = []
        for f in msgspec.structs.fields(t):
            default = None if f.type is msgspec.Raw else f.default
            if default is msgspec.NODEFAULT:
                fields.append((f.name, _schema_twin(f.type)))  # type: ignore[arg-type]
            else:
                fields.append(
                    (f.name, IGNORED if f.type is msgspec.Raw else _schema_twin(f.type), default)
                )
        config = t.__struct_config__
        twin = msgspec.defstruct(
            t.__name__,
            fields,
            rename={f.name: f.encode_name for f in msgspec.structs.fields(t)},
            kw_only=True,
            forbid_unknown_fields=config.forbid_unknown_fields,
        )
        twin.__doc__ = t.__doc__
        return twin
    if get_origin(t) in (Union, types.UnionType):
        return Union[tuple(_schema_twin(a) for a in get_args(t))]  # noqa: UP007
    return t


def _has_raw(cls: type[msgspec.Struct]) -> bool:
    for f in msgspec.structs.fields(cls):
        if f.type is msgspec.Raw:
            return True
        for member in (f.type, *get_args(f.type)):
            if isinstance(member, type) and issubclass(member, msgspec.Struct) and _has_raw(member):
                return True
    return False


def add_openapi(app: QuartTrio, role: str) -> None:
    """Serve `GET /openapi.json`: the document of the routes `app` has registered, made at the
    first request (once every route is in)."""
    made: list[bytes] = []

    @app.get("/openapi.json")
    async def openapi_document() -> Response:
        if not made:
            routes = app_routes(app)
            missing = routes - {(op.method, op.path) for op in TABLES[role]}
            for method, path in sorted(missing):  # tests/http/test_openapi.py fails on these
                log.warning("%s %s is not in orc/http/openapi.py: not documented", method, path)
            made.append(msgspec.json.encode(document(role, routes)))
        return Response(made[0], content_type=JSON)
