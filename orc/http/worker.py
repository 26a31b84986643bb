"""A worker's HTTP API, as the seed's worker has it: run, list and stop tasks, and node stats."""

from __future__ import annotations

from pathlib import Path

import trio
from quart import Response
from quart_trio import QuartTrio

from actors import ActorRef
from orc.core.messages import GetLogs, ListWorkerTasks, RunTask, StopTask
from orc.core.model import State
from orc.http.app import (
    check_id,
    create_app,
    error,
    json_response,
    logs_response,
    no_content,
    read_task_event,
    wire_event,
    wire_tasks,
)
from orc.shell.stats import node_stats

ASK_TIMEOUT = 10.0
_stats_limiter = trio.CapacityLimiter(2)


def worker_app(worker: ActorRef, data_dir: Path, max_body: int) -> QuartTrio:
    app = create_app("orc-worker", max_body)

    async def ask(message: object) -> object:
        return await worker.ask(message, timeout=ASK_TIMEOUT)

    @app.post("/tasks")
    async def run_task() -> Response:
        event = await read_task_event()
        assert event.task is not None
        if event.state == State.COMPLETED:
            return await stop_task(event.task.id)
        await ask(RunTask(event.task))
        return json_response(wire_event(event), 201)

    @app.get("/tasks")
    async def list_tasks() -> Response:
        tasks = await ask(ListWorkerTasks())
        assert isinstance(tasks, list)
        return json_response(wire_tasks(tasks))

    @app.delete("/tasks/<task_id>")
    async def stop_task(task_id: str) -> Response:
        known = await ask(StopTask(check_id(task_id)))
        if known is None:
            return error(404, f"no task with ID {task_id} on this worker")
        return no_content()

    @app.get("/tasks/<task_id>/logs")
    async def task_logs(task_id: str) -> Response:
        logs = await ask(GetLogs(check_id(task_id)))
        if logs is None:
            return error(404, f"no task with ID {task_id} on this worker")
        return logs_response(logs)  # type: ignore[arg-type]

    @app.get("/stats")
    async def stats() -> Response:
        tasks = await ask(ListWorkerTasks())
        assert isinstance(tasks, list)
        running = sum(1 for t in tasks if t.state == State.RUNNING)
        body = await trio.to_thread.run_sync(node_stats, data_dir, running, limiter=_stats_limiter)
        return json_response(body)

    return app
