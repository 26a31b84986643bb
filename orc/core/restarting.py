"""What the manager decides about restarts and health: pure functions of its state.

- `review` looks at the events any other decision proposes (a worker's exit, a lost task, a
  node gone down) and, when a task's restart policy restarts it, puts a `TaskRestarting` before
  the event that ends it. That event is still logged, as a record of how the run ended; `apply`
  sees the task already waiting for its restart and changes nothing else.
- `unhealthy` turns the HealthChecker's verdict into a `TaskUnhealthy` (and a stop, unless the
  policy is `no`); the stopped run then ends as a failure with the health check's reason.
- `restart_due` ends a backoff: `TaskRestarted` on the node the task waited on while that node
  can still run it, or on the best other node (the configured placement policy, over the
  allocations in the state), or a `TaskUnplaced` saying why there is none yet.
"""

from __future__ import annotations

import logging

import msgspec

from orc.core.events import (
    AnyEvent,
    TaskExited,
    TaskFailed,
    TaskRestarted,
    TaskRestarting,
    TaskStarted,
    TaskUnhealthy,
    TaskUnplaced,
)
from orc.core.messages import RestartDue, Unhealthy
from orc.core.model import NodeInfo, State, Task
from orc.core.placement import allocations, choose
from orc.core.restarts import DEFAULT, RestartSettings, plan, policy_of
from orc.core.state import ClusterState
from orc.core.times import later, seconds_between
from orc.core.transitions import ACTIVE

log = logging.getLogger("orc.manager")

Decision = tuple[list[AnyEvent], object]
NONE: Decision = ([], None)


def _end_of(event: AnyEvent) -> tuple[bool, str, int | None] | None:
    """For an event that ends a run and is not a user's stop: (clean, reason, exit code)."""
    match event:
        case TaskExited(stopped=False, exit_code=code, error=error):
            clean = code == 0 and not error
            return clean, error or ("exited 0" if code == 0 else f"exited with status {code}"), code
        case TaskFailed(error=error):
            return False, error, None
    return None


def review(
    state: ClusterState, events: list[AnyEvent], settings: RestartSettings = DEFAULT
) -> list[AnyEvent]:
    """The proposed `events` with restarts added, and stale reports of a waiting task dropped."""
    out: list[AnyEvent] = []
    for event in events:
        task_id = getattr(event, "task_id", None)
        task = state.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or not isinstance(event, TaskStarted | TaskExited | TaskFailed):
            out.append(event)
            continue
        if state.waiting(task.id):
            log.info("ignoring %s for task %s: it waits to restart", type(event).__name__, task.id)
            continue
        killed = task.id in state.unhealthy and task.id not in state.stop_requested
        if isinstance(event, TaskExited) and event.stopped and killed:
            # orc stopped it for its health check: a failure, with that reason
            event = msgspec.structs.replace(event, stopped=False, error=state.unhealthy[task.id])
        end = _end_of(event)
        if end is None or task.state not in ACTIVE:
            out.append(event)
            continue
        clean, reason, code = end
        restart = _restart(state, task, event.at, clean, reason, code, settings)
        if isinstance(restart, str):  # not restarted: say why, when the policy would have
            if restart:
                event = msgspec.structs.replace(event, error=f"{reason}; {restart}")
            if killed and isinstance(event, TaskExited):
                # it may well have exited 0 on orc's SIGTERM: it failed all the same
                event = TaskFailed(at=event.at, task_id=task.id, error=event.error)
        else:
            out.append(restart)
        out.append(event)
    return out


def _restart(
    state: ClusterState,
    task: Task,
    at: str,
    clean: bool,
    reason: str,
    code: int | None,
    settings: RestartSettings,
) -> TaskRestarting | str:
    if clean and task.state == State.SCHEDULED:
        return ""  # a clean end of a task that never ran: nothing to restart
    previous = state.restarts.get(task.id)
    ran_for = seconds_between(task.starts_at, at) if task.state == State.RUNNING else None
    p = plan(policy_of(task), clean, previous.streak if previous else 0, ran_for, settings)
    if not p.restart:
        return p.why_not
    return TaskRestarting(
        at=at,
        task_id=task.id,
        node=task.node,
        reason=reason,
        restart_count=task.restart_count + 1,
        streak=p.streak,
        delay=p.delay,
        not_before=later(at, p.delay),
        exit_code=code,
    )


def unhealthy(state: ClusterState, cmd: Unhealthy, settings: RestartSettings = DEFAULT) -> Decision:
    task = state.tasks.get(cmd.task_id)
    if (
        task is None
        or task.state != State.RUNNING
        or task.node != cmd.node
        or task.starts_at != cmd.starts_at
        or task.id in state.unhealthy
        or task.id in state.stop_requested
    ):
        return NONE  # a verdict on a run that is over, or one already acted on
    reason = f"unhealthy: {cmd.reason}"
    event = TaskUnhealthy(
        at=cmd.now,
        task_id=task.id,
        node=task.node,
        reason=reason,
        failures=cmd.failures,
        stop=policy_of(task) != "no",
    )
    return [event], None


def can_run(state: ClusterState, node: str, task: Task) -> bool:
    info = state.nodes.get(node)
    return info is not None and node not in state.down and task.driver in info.drivers


def restart_due(
    state: ClusterState, cmd: RestartDue, settings: RestartSettings = DEFAULT
) -> Decision:
    task = state.tasks.get(cmd.task_id)
    r = state.restarts.get(cmd.task_id)
    if task is None or r is None or not r.waiting or r.not_before != cmd.not_before:
        return NONE  # stopped meanwhile, or a timer of an earlier backoff
    if can_run(state, task.node, task):
        return [TaskRestarted(at=cmd.now, task_id=task.id, node=task.node)], None
    nodes: list[NodeInfo] = [n for n in state.nodes.values() if n.name not in state.down]
    others = (t for t in state.tasks.values() if t.id != task.id)
    choice = choose(settings.placement, task, nodes, allocations(others))
    if choice.node:
        return [TaskRestarted(at=cmd.now, task_id=task.id, node=choice.node)], None
    reason = f"waits to restart: node {task.node} cannot run it and {choice.reason}"
    if task.error == reason:
        return NONE
    return [TaskUnplaced(at=cmd.now, task_id=task.id, reason=reason)], None
