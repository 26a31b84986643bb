"""A worker's HTTP API, as the seed's worker has it: run, list and stop tasks, and node stats;
and `POST /orders`, how a manager's proxy hands over many orders in one request.

Every route that changes something is an `Orders` batch to the Worker actor: `POST /tasks` is
one `RunTask`, `DELETE /tasks/{id}` one `StopTask`, `POST /orders` as many as the body holds.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors import ActorRef
from orc.core.messages import (
    GetLogs,
    ListWorkerTasks,
    Order,
    OrderResult,
    OrderResults,
    Orders,
    RunTask,
    StopTask,
)
from orc.core.model import State, Task
from orc.core.validation import DRIVERS, Invalid, check_orders, decode_json
from orc.http.app import (
    allow_larger_bodies,
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
from orc.http.metrics import add_worker_metrics
from orc.http.openapi import add_openapi
from orc.http.wire import OrdersTaken
from orc.shell.stats import node_stats

ASK_TIMEOUT = 10.0
_stats_limiter = trio.CapacityLimiter(2)
_orders = msgspec.json.Decoder(Orders)


ORDERS_MAX_BODY = 64 << 20  # POST /orders: a reconcile of 100,000 tasks fits


def worker_app(
    worker: ActorRef[object],
    data_dir: Path,
    max_body: int,
    orders_max_body: int = ORDERS_MAX_BODY,
) -> QuartTrio:
    """`orders_max_body` (ORC_ORDERS_MAX_BODY): what `POST /orders` takes, past `max_body`,
    because a reconcile names every task placed on the node (about 500 bytes each)."""
    app = create_app("orc-worker", max_body)
    allow_larger_bodies(app, {"/orders": max(max_body, orders_max_body)})
    taken = OrdersTaken()

    async def ask(message: object) -> object:
        return await worker.ask(message, timeout=ASK_TIMEOUT)

    async def tasks() -> list[Task]:
        known = await ask(ListWorkerTasks())
        assert isinstance(known, list)
        return known

    add_worker_metrics(app, tasks, data_dir, taken)
    add_openapi(app, "worker")

    async def carry_out(*orders: Order) -> tuple[OrderResult, ...]:
        results = await ask(Orders(orders))
        assert isinstance(results, OrderResults)
        return results.results

    @app.post("/orders")
    async def take_orders() -> Response:
        body = await request.get_data(cache=False)
        assert isinstance(body, bytes)
        wanted = 'a JSON {"Orders": [...]} of RunTask, StopTask and Reconcile orders'
        orders = check_orders(decode_json(body, _orders, wanted))
        results = await carry_out(*orders.orders)
        taken.batches += 1
        taken.orders += len(orders.orders)
        return json_response(OrderResults(results))

    @app.get("/orders")
    async def orders_taken() -> Response:
        return json_response(taken)

    @app.post("/tasks")
    async def run_task() -> Response:
        event = await read_task_event()
        assert event.task is not None
        if event.state == State.COMPLETED:
            return await stop_task(event.task.id)
        await carry_out(RunTask(event.task))
        return json_response(wire_event(event), 201)

    @app.get("/tasks")
    async def list_tasks() -> Response:
        tasks = await ask(ListWorkerTasks())
        assert isinstance(tasks, list)
        return json_response(wire_tasks(tasks))

    @app.delete("/tasks/<task_id>")
    async def stop_task(task_id: str) -> Response:
        (result,) = await carry_out(StopTask(check_id(task_id)))
        if result.status >= 400:
            return error(result.status, result.message)
        return no_content()

    @app.get("/tasks/<task_id>/logs")
    async def task_logs(task_id: str) -> Response:
        """`?driver=` (from the manager, which knows the task) finds the output of a task
        this worker has forgotten since it restarted."""
        driver = request.args.get("driver", "")
        if driver and driver not in DRIVERS:
            raise Invalid(
                f"Expected a driver one of {', '.join(DRIVERS)}, got {driver!r}"
                " - at the query driver"
            )
        match await ask(GetLogs(check_id(task_id), driver)):
            case (bytes() as out, bytes() as err):
                return logs_response((out, err))
        return error(404, f"no task with ID {task_id} on this worker")

    @app.get("/stats")
    async def stats() -> Response:
        tasks = await ask(ListWorkerTasks())
        assert isinstance(tasks, list)
        running = sum(1 for t in tasks if t.state == State.RUNNING)
        body = await trio.to_thread.run_sync(node_stats, data_dir, running, limiter=_stats_limiter)
        return json_response(body)

    return app
