"""`GET /tasks/{id}/history`: one task's life as the log tells it, with the time it spent in
each state. The same story `orc replay --task ID --json` tells, read from the live log.

`GET /jobs/{id}/history`: one job's story, as `orc replay --job ID --json` tells it: its
versions, every decision the reconciler logged about it with its reason, and each of its tasks'
fate.

Both read the whole log, off the event loop, through a blocking `ReadLog`: a log directory
beside the manager that writes it (`orc.replay.read.read`), or the log in etcd
(`orc.replay.read.read_etcd`) for highly available managers."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import trio
from quart import Response
from quart_trio import QuartTrio

from actors import ActorRef
from orc.core.messages import GetJob, GetTask, Reply
from orc.core.model import for_wire
from orc.http.app import check_id, error, json_response
from orc.http.jobs import check_job_id
from orc.replay import story as replay
from orc.replay.read import BadInput, Log

ASK_TIMEOUT = 10.0
_readers = trio.CapacityLimiter(2)  # each request reads the whole log: not many at once

ReadLog = Callable[[], Log]  # the whole log, read-only (blocking)


def _history(read_log: ReadLog, task_id: str) -> replay.History:
    """Blocking: reads the log (read-only, beside the manager that writes it)."""
    log = read_log()
    return replay.history(log.records, task_id, log.base)


def _job_history(read_log: ReadLog, job_id: str) -> replay.JobStory:
    """Blocking: reads the log (read-only, beside the manager that writes it)."""
    log = read_log()
    return replay.job_story(log.records, job_id, log.base)


def add_history_route(app: QuartTrio, manager: ActorRef, read_log: ReadLog) -> None:
    """The task history route, and the job history route beside it."""
    add_job_history_route(app, manager, read_log)

    @app.get("/tasks/<task_id>/history")
    async def task_history(task_id: str) -> Response:
        reply = await manager.ask(GetTask(check_id(task_id)), timeout=ASK_TIMEOUT)
        assert isinstance(reply, Reply)
        if reply.task is None:
            return error(reply.status, reply.message)
        try:
            story = await trio.to_thread.run_sync(
                _history, read_log, reply.task.id, limiter=_readers
            )
        except (BadInput, replay.ReplayError) as exc:
            return error(503, f"cannot tell the history of task {reply.task.id}: {exc}")
        return json_response(msgspec.structs.replace(story, task=for_wire(story.task)))


def add_job_history_route(app: QuartTrio, manager: ActorRef, read_log: ReadLog) -> None:
    @app.get("/jobs/<job_id>/history")
    async def job_history(job_id: str) -> Response:
        # The manager knows its jobs: an unknown one is a 404 without reading the log.
        reply = await manager.ask(GetJob(check_job_id(job_id)), timeout=ASK_TIMEOUT)
        assert isinstance(reply, Reply)
        if reply.status != 200:
            return error(reply.status, reply.message)
        try:
            story = await trio.to_thread.run_sync(_job_history, read_log, job_id, limiter=_readers)
        except (BadInput, replay.ReplayError) as exc:
            return error(503, f"cannot tell the history of job {job_id}: {exc}")
        return json_response(story)
