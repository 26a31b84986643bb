"""The manager's job routes: `POST /jobs`, `GET /jobs`, `GET|DELETE /jobs/{id}`, `PUT
/jobs/{id}/scale`, `GET /jobs/{id}/versions`, `POST /jobs/{id}/revert`, `POST /jobs/{id}/plan`.

Each one reads and checks its request (a bad body or job ID is a 400 naming the field, in the
words of the bounds in `orc.core.jobspec`), then asks the Manager actor one message; the
manager's `Reply` carries the status and the body (a `JobAccepted`, a `JobView`, ...).

A job spec's errors are named from `Job`, the body itself, as a task's are from `Task`:
`Job.Count: must be a whole number from 0 to 10000`, `Expected int, got str - at $.Job.Count`.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from actors import ActorRef
from orc.clock import now
from orc.core.jobspec import (
    JOB_ID_PATTERN,
    JOB_ID_WORDS,
    JobSpec,
    RevertBody,
    ScaleBody,
    job_problem,
)
from orc.core.messages import (
    GetJob,
    JobVersions,
    ListJobs,
    PlanJob,
    Reply,
    RevertJob,
    ScaleJob,
    StopJob,
    SubmitJob,
)
from orc.core.spec import explain, to_task
from orc.core.validation import Invalid, check_task_spec
from orc.http.app import json_response, reply_response

ASK_TIMEOUT = 10.0
ROOT = "Job"
T = TypeVar("T")

# The JobId bound of orc.core.jobspec, for IDs in a path.
_JOB_ID = re.compile(JOB_ID_PATTERN)

_job = msgspec.json.Decoder(JobSpec)
_scale = msgspec.json.Decoder(ScaleBody)
_revert = msgspec.json.Decoder(RevertBody)
# msgspec's " - at `$...`" at the end of an error
_AT_ROOT = re.compile(r"( - at (?:`?key`? in )?`)\$(?=[^`]*`$)")


def decode_body(body: bytes, decoder: msgspec.json.Decoder[T], wanted: str, root: str = ROOT) -> T:
    """A job request's body decoded, or Invalid naming the field from `root` (`Job` for a job
    spec; "" for a small body such as `{"Count": 3}`, whose fields are named alone)."""
    if not body.strip():
        raise Invalid(f"request body is empty: send {wanted}")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Invalid(_words(str(exc), decoder.type, root)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON: {str(exc).replace('`', '')}") from None


def _words(error: str, type_: object, root: str) -> str:
    """A bound's own words (`Job.Count: must be ...`), or msgspec's with the path from `root`
    (`Object contains unknown field Foo - at $.Job`)."""
    said = explain(error, type_, root)
    if said != error.replace("`", ""):
        return said  # the bound's description
    at = f"$.{root}" if root else "$"
    if _AT_ROOT.search(error):
        return _AT_ROOT.sub(lambda m: m.group(1) + at, error).replace("`", "")
    return f"{said} - at {at}"


def check_job_id(job_id: str, where: str = "the path /jobs/{id}") -> str:
    if not _JOB_ID.match(job_id):
        raise Invalid(f"not a job ID: {job_id!r} (a job ID is {JOB_ID_WORDS}) - at {where}")
    return job_id


def check_job(spec: JobSpec) -> JobSpec:
    """A decoded spec checked beyond its types (`job_problem`, the template as a task), with
    its template's driver decided; Invalid with the first problem."""
    problem = job_problem(spec)
    if problem is not None:
        raise Invalid(problem)
    task = check_task_spec(to_task(spec.task), f"$.{ROOT}.Task")
    return msgspec.structs.replace(
        spec, task=msgspec.structs.replace(spec.task, driver=task.driver)
    )


async def read_job() -> JobSpec:
    """The checked job spec in the request body; raises Invalid."""
    body = await request.get_data(cache=False)
    assert isinstance(body, bytes)
    return check_job(decode_body(body, _job, "a JSON job spec (ID, Type, Count, Task, ...)"))


async def _read(decoder: msgspec.json.Decoder[T], wanted: str, root: str) -> T:
    body = await request.get_data(cache=False)
    assert isinstance(body, bytes)
    return decode_body(body, decoder, wanted, root)


def add_job_routes(app: QuartTrio, manager: ActorRef) -> None:
    async def ask(message: object) -> Response:
        reply = await manager.ask(message, timeout=ASK_TIMEOUT)
        assert isinstance(reply, Reply), reply
        return reply_response(reply)

    @app.post("/jobs")
    async def submit_job() -> Response:
        spec = await read_job()
        return await ask(SubmitJob(spec, now()))

    @app.get("/jobs")
    async def list_jobs() -> Response:
        views = await manager.ask(ListJobs(), timeout=ASK_TIMEOUT)
        assert isinstance(views, list)
        return json_response(views)

    @app.get("/jobs/<job_id>")
    async def get_job(job_id: str) -> Response:
        return await ask(GetJob(check_job_id(job_id)))

    @app.delete("/jobs/<job_id>")
    async def stop_job(job_id: str) -> Response:
        return await ask(StopJob(check_job_id(job_id), now()))

    @app.put("/jobs/<job_id>/scale")
    async def scale_job(job_id: str) -> Response:
        job_id = check_job_id(job_id)
        body = await _read(_scale, 'a JSON object {"Count": N}', "")
        return await ask(ScaleJob(job_id, body.count, now()))

    @app.get("/jobs/<job_id>/versions")
    async def job_versions(job_id: str) -> Response:
        return await ask(JobVersions(check_job_id(job_id)))

    @app.post("/jobs/<job_id>/revert")
    async def revert_job(job_id: str) -> Response:
        job_id = check_job_id(job_id)
        body = await _read(_revert, 'a JSON object {"Version": V}', "")
        return await ask(RevertJob(job_id, body.version, now()))

    @app.post("/jobs/<job_id>/plan")
    async def plan_job(job_id: str) -> Response:
        job_id = check_job_id(job_id)
        spec = await read_job()
        if spec.id != job_id:
            raise Invalid(
                f"the body's ID {spec.id!r} is not the path's job {job_id!r}: plan a job at"
                f" its own path, /jobs/{spec.id}/plan - at $.{ROOT}.ID"
            )
        return await ask(PlanJob(spec, now()))
