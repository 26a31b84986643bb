"""The manager's HTTP API: the seed's routes, each one ask to the Manager actor."""

from __future__ import annotations

from collections.abc import Mapping

from quart import Response, request
from quart_trio import QuartTrio

from actors import ActorRef
from orc.clock import now
from orc.core.messages import GetLogs, GetStats, GetTask, ListTasks, Reply, Stop, Submit
from orc.http.app import (
    check_id,
    create_app,
    json_response,
    logs_response,
    read_task_event,
    reply_response,
    wire_tasks,
)
from orc.http.jobs import add_job_routes, check_job_id
from orc.http.openapi import add_openapi

ASK_TIMEOUT = 10.0


def manager_app(
    manager: ActorRef, max_body: int, workers: Mapping[str, ActorRef] | None = None
) -> QuartTrio:
    """`workers`: each node's WorkerProxy, for what only the worker has (a task's logs)."""
    app = create_app("orc-manager", max_body)
    add_openapi(app, "manager")

    async def ask(message: object) -> object:
        return await manager.ask(message, timeout=ASK_TIMEOUT)

    @app.post("/tasks")
    async def submit() -> Response:
        event = await read_task_event()
        reply = await ask(Submit(event, now()))
        assert isinstance(reply, Reply)
        return reply_response(reply)

    @app.get("/tasks")
    async def list_tasks() -> Response:
        job = request.args.get("job", "")
        tasks = await ask(ListTasks(job=check_job_id(job, "the query ?job=") if job else ""))
        assert isinstance(tasks, list)
        return json_response(wire_tasks(tasks))

    @app.get("/tasks/<task_id>")
    async def get_task(task_id: str) -> Response:
        reply = await ask(GetTask(check_id(task_id)))
        assert isinstance(reply, Reply)
        return reply_response(reply)

    @app.delete("/tasks/<task_id>")
    async def stop_task(task_id: str) -> Response:
        reply = await ask(Stop(check_id(task_id), now()))
        assert isinstance(reply, Reply)
        return reply_response(reply)

    @app.get("/tasks/<task_id>/logs")
    async def task_logs(task_id: str) -> Response:
        reply = await ask(GetTask(check_id(task_id)))
        assert isinstance(reply, Reply)
        if reply.task is None:
            return reply_response(reply)
        task = reply.task
        proxy = (workers or {}).get(task.node)
        logs = None
        if proxy is not None:
            logs = await proxy.ask(GetLogs(task.id, task.driver), timeout=ASK_TIMEOUT)
        return logs_response(logs or (b"", b""))  # type: ignore[arg-type]

    @app.get("/stats")
    async def stats() -> Response:
        return json_response(await ask(GetStats()))

    add_job_routes(app, manager)

    return app
