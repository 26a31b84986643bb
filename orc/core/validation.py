"""Turn a request body into a checked TaskEvent (or a worker's orders), or say exactly what is
wrong with it.

The bounds of every field are msgspec types in `orc.core.spec`, so decoding refuses an
out-of-bounds value and names it (`Task.CPU: must be a finite number between 0 and 1024`); a
value of the wrong type keeps msgspec's words and path (`Expected int, got str - at
$.Task.Memory`). What msgspec cannot express (IDs as UUIDs, which driver runs the task) is
checked here, and named in the same style.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

import msgspec

from orc.core.messages import Order, Orders, Reconcile, RunTask, StopTask
from orc.core.model import State, Task, TaskEvent
from orc.core.spec import TaskEventBody, explain, spec_problem, to_task

DRIVERS = ("docker", "process")

_decoder = msgspec.json.Decoder(TaskEventBody)
T = TypeVar("T")


class Invalid(ValueError):
    """Bad input: the message says which field and why."""


def decode_task_event(body: bytes) -> TaskEvent:
    """The body of `POST /tasks`, within the bounds of `orc.core.spec`, as the core's
    TaskEvent; fields orc owns are dropped unread."""
    checked = decode_json(body, _decoder, "a JSON TaskEvent with a Task")
    requested = checked.requested_at
    return TaskEvent(
        id=checked.id,
        state=checked.state,
        requested_at=requested.isoformat() if requested is not None else None,
        task=to_task(checked.task) if checked.task is not None else None,
    )


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T], wanted: str) -> T:
    """A request body decoded, or Invalid saying where and why (msgspec's path, or the
    bound's own words)."""
    if not body.strip():
        raise Invalid(f"request body is empty: send {wanted}")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Invalid(explain(str(exc), decoder.type)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON: {_backticks_off(str(exc))}") from None


def _backticks_off(text: str) -> str:
    return text.replace("`", "")


def _check_uuid(value: str, where: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"Expected a UUID, got {value!r} - at {where}") from None


def check_task_event(event: TaskEvent, new_id: str) -> TaskEvent:
    """The event with IDs filled in and normalised, or Invalid.

    `new_id` is used when neither the event nor its task carries an ID: the caller makes it,
    so this stays a pure function.
    """
    if event.state not in (State.SCHEDULED, State.RUNNING, State.COMPLETED):
        raise Invalid(
            f"Expected State 1 or 2 (run the task) or 3 (stop it), got {event.state} - at $.State"
        )
    if event.task is None:
        raise Invalid("Object missing required field Task - at $")
    event_id = _check_uuid(event.id, "$.ID") if event.id else ""
    task_id = _check_uuid(event.task.id, "$.Task.ID") if event.task.id else ""
    task_id = task_id or event_id or new_id
    task = msgspec.structs.replace(event.task, id=task_id)
    if event.state != State.COMPLETED:
        task = check_task_spec(task)
    return msgspec.structs.replace(event, id=event_id or task_id, task=task)


def check_orders(orders: Orders) -> Orders:
    """A worker's batch of orders (`POST /orders`) checked as `POST /tasks` checks a task:
    every task ID a UUID and every task's spec valid, with the `Driver` decided; Invalid
    naming the first bad field (`$.Orders[2].Task.Memory`). All or nothing: a batch with one
    bad order is refused whole, so none of it has run."""
    checked: list[Order] = []
    for i, order in enumerate(orders.orders):
        at = f"$.Orders[{i}]"
        match order:
            case RunTask(task):
                checked.append(RunTask(_checked_task(task, f"{at}.Task")))
            case StopTask(task_id):
                checked.append(StopTask(_check_uuid(task_id, f"{at}.TaskID")))
            case Reconcile(tasks, exclusive):
                placed = tuple(_checked_task(t, f"{at}.Tasks[{j}]") for j, t in enumerate(tasks))
                checked.append(Reconcile(placed, exclusive))
    return Orders(tuple(checked))


def _checked_task(task: Task, at: str) -> Task:
    task = msgspec.structs.replace(task, id=_check_uuid(task.id, f"{at}.ID"))
    return check_task_spec(task, at)


def check_task_spec(task: Task, at: str = "$.Task") -> Task:
    """Check what a task asks for against the bounds of `orc.core.spec` (for a task that did
    not come through `decode_task_event`: a worker's orders) and the rules between fields;
    returns it with `Driver` decided. `at` is where the task is in the body, for the
    messages."""
    problem = spec_problem(task, at.removeprefix("$."))
    if problem is not None:
        raise Invalid(problem)
    if task.cmd is not None and not task.cmd and not task.image:
        raise Invalid(f"Expected a non-empty argv list, got [] - at {at}.Cmd")
    return msgspec.structs.replace(task, driver=_driver_for(task, at))


def _driver_for(task: Task, at: str) -> str:
    if task.driver:
        if task.driver not in DRIVERS:
            raise Invalid(
                f"Expected Driver one of {', '.join(DRIVERS)}, got {task.driver!r} - at {at}.Driver"
            )
        if task.driver == "docker" and not task.image:
            raise Invalid(f"Driver docker needs an Image - at {at}.Image")
        if task.driver == "process" and not task.cmd:
            raise Invalid(f"Driver process needs a Cmd - at {at}.Cmd")
        return task.driver
    if task.image:
        return "docker"
    if task.cmd:
        return "process"
    raise Invalid(
        "Task needs an Image (run as a Docker container) or a Cmd (run as a local process)"
        f" - at {at}"
    )
