"""The Worker actor: runs tasks through its drivers and reports every start and exit.

Orders arrive in batches (`Orders`, from the node's proxy or the worker's own HTTP routes)
and are carried out in order, each with its `OrderResult`. Updates go to `updates` (the
node's WorkerProxy in one process, the worker's own log otherwise), which carries them to
the manager. Each running task has a watcher task in the worker's nursery; stopping happens in
the background too, so a slow stop never holds up the mailbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import trio

from actors import Actor, ActorRef, Mailbox
from orc.core.events import TaskExited, TaskLost, TaskStarted
from orc.core.messages import (
    Disown,
    GetLogs,
    ListWorkerTasks,
    Order,
    OrderResult,
    OrderResults,
    Orders,
    Ping,
    Reconcile,
    RunTask,
    Shutdown,
    StopTask,
)
from orc.core.model import NodeInfo, State, Task
from orc.drivers.base import Driver, DriverUnavailable, Exit, Handle, LaunchError

log = logging.getLogger("orc.worker")

RECONCILE_RETRY = 2.0  # seconds before asking a driver again that could not tell


@dataclass
class Entry:
    """One task as this worker knows it."""

    task: Task
    handle: Handle | None = None
    done: trio.Event = field(default_factory=trio.Event)
    shutting_down: bool = False
    stop_wanted: bool = False


class Worker(Actor[object]):
    def __init__(
        self,
        node: NodeInfo,
        drivers: dict[str, Driver],
        updates: ActorRef[object],
        now: Callable[[], str],
    ) -> None:
        self.node = node
        self.drivers = drivers
        self.updates = updates
        self.now = now
        self.tasks: dict[str, Entry] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, mailbox: Mailbox[object]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for driver in self.drivers.values():
                nursery.start_soon(driver.prepare)  # launch-time work done ahead
            await self._adopt_survivors()
            await super().run(mailbox)
            nursery.cancel_scope.cancel()

    async def handle(self, message: object) -> object:
        match message:
            case Orders(orders):
                return OrderResults(tuple([await self._carry_out(order) for order in orders]))
            case ListWorkerTasks():
                return [e.task for e in self.tasks.values()]
            case GetLogs(task_id, driver):
                return await self._logs(task_id, driver)
            case Disown(task_id):
                return self.tasks.pop(task_id, None) is not None
            case Shutdown():
                await self._shutdown()
            case Ping():
                return None
            case _:
                raise TypeError(f"worker {self.node.name}: unexpected message {message!r}")
        return None

    async def _carry_out(self, order: Order) -> OrderResult:
        match order:
            case RunTask(task):
                await self._run(task)
                return OrderResult(201)
            case StopTask(task_id):
                if self._stop(task_id) is None:
                    # Say so, so that a task the manager still thinks runs here (its order,
                    # or this worker's memory of it, was lost) ends instead of staying stuck.
                    why = f"node {self.node.name} does not run it (asked to stop it)"
                    lost = TaskLost(at=self.now(), task_id=task_id, node=self.node.name, error=why)
                    await self.updates.tell(lost)
                    return OrderResult(404, f"no task with ID {task_id} on this worker")
                return OrderResult(204)
            case Reconcile(tasks, exclusive):
                for task in tasks:
                    await self._reconcile(task)
                if exclusive:
                    self._stop_others({task.id for task in tasks})
                return OrderResult(200)

    # -- running -------------------------------------------------------------------------------

    async def _run(self, task: Task) -> None:
        """Start each run of a task (`run_key`: its submission and its attempt) at most once.
        An order for a run this worker has already (a proxy that sent it again after a timeout,
        though the first had arrived) only brings its news again: a task must never run twice.
        A restart is a new attempt, and runs; so does an ID submitted anew once forgotten."""
        known = self.tasks.get(task.id)
        if (
            known is not None
            and known.task.created_at == task.created_at  # not an ID submitted anew
            and known.task.restart_count >= task.restart_count
        ):
            if known.done.is_set():
                await self._report_again(known)
            return
        entry = Entry(msgspec.structs.replace(task, state=State.SCHEDULED, node=self.node.name))
        self.tasks[task.id] = entry
        driver = self.drivers.get(task.driver)
        if driver is None:
            await self._finish(
                entry, Exit(None, f"node {self.node.name} has no {task.driver} driver")
            )
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._launch, entry, driver)

    async def _launch(self, entry: Entry, driver: Driver) -> None:
        """Start in the background, so that many launches overlap their file and process work.
        Whatever goes wrong ends the task Failed with the reason: a launch never leaves it
        Scheduled, and never takes the worker down. A stop that arrived before the launch began
        (a DELETE right after the POST: the two orders came in one batch) means it never starts."""
        if entry.stop_wanted:
            await self._finish(entry, Exit(None, "stopped before it started"))
            return
        try:
            started = await driver.start(entry.task)
        except LaunchError as exc:
            await self._finish(entry, Exit(None, str(exc) or "the launch failed"))
            return
        except Exception as exc:
            log.exception(
                "worker %s: task %s: driver %s failed", self.node.name, entry.task.id, driver.name
            )
            await self._finish(
                entry, Exit(None, f"driver {driver.name} failed to start it: {exc!r}")
            )
            return
        if isinstance(started, Exit):  # this attempt ran before orc restarted: how it ended
            await self._finish(entry, started)
            return
        await self._running(entry, started)
        if entry.stop_wanted:
            self._stop(entry.task.id)

    async def _running(self, entry: Entry, handle: Handle) -> None:
        at = self.now()
        entry.handle = handle
        entry.task = msgspec.structs.replace(
            entry.task,
            state=State.RUNNING,
            starts_at=at,
            container_id=handle.container_id,
            host_ports=handle.host_ports,
        )
        await self.updates.tell(
            TaskStarted(
                at=at,
                task_id=entry.task.id,
                node=self.node.name,
                container_id=handle.container_id,
                host_ports=handle.host_ports,
            )
        )
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, entry)

    async def _watch(self, entry: Entry) -> None:
        assert entry.handle is not None
        driver = self.drivers[entry.task.driver]
        try:
            result = await driver.wait(entry.handle)
        except Exception as exc:
            log.exception(
                "worker %s: task %s: driver %s failed", self.node.name, entry.task.id, driver.name
            )
            result = Exit(None, f"driver {driver.name} lost track of it: {exc!r}")
        await self._finish(entry, result)

    async def _finish(self, entry: Entry, result: Exit) -> None:
        at = self.now()
        unstarted = entry.handle is None and entry.stop_wanted
        requested = unstarted or (entry.handle is not None and entry.handle.stop_requested)
        stopped = requested and not entry.shutting_down
        if entry.shutting_down:
            error = "stopped because orc shut down"
        elif unstarted:
            error = "stopped before it started"
        else:
            error = "" if stopped else result.error
        entry.task = msgspec.structs.replace(
            entry.task,
            state=State.COMPLETED if stopped or result.code == 0 else State.FAILED,
            finished_at=at,
            exit_code=result.code,
            error=error,
        )
        await self.updates.tell(
            TaskExited(
                at=at,
                task_id=entry.task.id,
                node=self.node.name,
                exit_code=result.code,
                error=entry.task.error,
                stopped=stopped,
            )
        )
        entry.done.set()

    def _stop(self, task_id: str) -> bool | None:
        """None for a task this worker does not know; True when a stop has begun."""
        entry = self.tasks.get(task_id)
        if entry is None:
            return None
        if entry.done.is_set():
            return False
        if entry.handle is None:
            entry.stop_wanted = True  # still launching: stopped as soon as it runs
            return True
        assert self._nursery is not None
        self._nursery.start_soon(self._stop_now, entry.task, entry.handle)
        return True

    async def _stop_now(self, task: Task, handle: Handle) -> None:
        driver = self.drivers[task.driver]
        try:
            await driver.stop(handle)
        except Exception:
            log.exception(
                "worker %s: task %s: driver %s failed to stop it",
                self.node.name,
                task.id,
                driver.name,
            )

    async def _shutdown(self) -> None:
        running = [e for e in self.tasks.values() if not e.done.is_set()]
        for entry in running:
            entry.shutting_down = True
            self._stop(entry.task.id)
        for entry in running:
            await entry.done.wait()

    # -- recovery ------------------------------------------------------------------------------

    async def _adopt_survivors(self) -> None:
        """Processes that outlived a restart of this worker are watched again, not duplicated.
        A driver that fails here (its engine is away, a record it cannot read) is logged: the
        manager's reconcile asks about each of its tasks again."""
        for driver in self.drivers.values():
            try:
                saved = await driver.saved_tasks()
            except Exception:
                log.exception(
                    "worker %s: driver %s cannot list its tasks", self.node.name, driver.name
                )
                continue
            for task in saved:
                try:
                    found = await driver.find(task)
                except Exception as exc:
                    log.warning("worker %s: task %s: %s", self.node.name, task.id, exc)
                    continue
                if found is not None and not isinstance(found, Exit):
                    log.info("worker %s: adopted task %s still running", self.node.name, task.id)
                    self.tasks[task.id] = Entry(
                        msgspec.structs.replace(task, state=State.SCHEDULED, node=self.node.name)
                    )
                    await self._running(self.tasks[task.id], found)

    async def _reconcile(self, task: Task) -> None:
        """Tell the manager what became of a task it believes is placed here."""
        entry = self.tasks.get(task.id)
        if entry is not None:
            await self._report_again(entry)
            return
        driver = self.drivers.get(task.driver)
        try:
            found = await driver.find(task) if driver is not None else None
        except DriverUnavailable as exc:
            log.warning("worker %s: task %s: %s; asking again", self.node.name, task.id, exc)
            assert self._nursery is not None
            self._nursery.start_soon(self._reconcile_later, task)
            return
        except Exception as exc:
            log.exception(
                "worker %s: task %s: driver %s failed", self.node.name, task.id, task.driver
            )
            found = Exit(None, f"driver {task.driver} could not tell what became of it: {exc!r}")
        if isinstance(found, Exit):
            entry = Entry(msgspec.structs.replace(task, node=self.node.name))
            self.tasks[task.id] = entry
            await self._finish(entry, found)
        elif found is not None:
            self.tasks[task.id] = Entry(msgspec.structs.replace(task, node=self.node.name))
            await self._running(self.tasks[task.id], found)
        elif task.state == State.SCHEDULED:
            await self._run(task)
        else:
            await self.updates.tell(
                TaskLost(
                    at=self.now(),
                    task_id=task.id,
                    node=self.node.name,
                    error=f"lost: node {self.node.name} has no trace of the task after a restart",
                )
            )

    def _stop_others(self, wanted: set[str]) -> None:
        """Stop what runs here but is not placed here any more: while this worker was away the
        manager failed it or placed it elsewhere, and a task must never run twice."""
        for entry in list(self.tasks.values()):
            if entry.task.id not in wanted and not entry.done.is_set():
                log.warning(
                    "worker %s: stopping task %s: the manager no longer places it here",
                    self.node.name,
                    entry.task.id,
                )
                self._stop(entry.task.id)

    async def _reconcile_later(self, task: Task) -> None:
        """Once the driver can tell again (its engine is back), reconcile the task then: a
        task must not be reported lost only because its engine was away for a moment."""
        await trio.sleep(RECONCILE_RETRY)
        if task.id not in self.tasks:
            await self._reconcile(task)

    async def _report_again(self, entry: Entry) -> None:
        task = entry.task
        if task.state == State.RUNNING:
            await self.updates.tell(
                TaskStarted(
                    at=task.starts_at or self.now(),
                    task_id=task.id,
                    node=self.node.name,
                    container_id=task.container_id,
                    host_ports=task.host_ports,
                )
            )
        elif task.state in (State.COMPLETED, State.FAILED):
            await self.updates.tell(
                TaskExited(
                    at=task.finished_at or self.now(),
                    task_id=task.id,
                    node=self.node.name,
                    exit_code=task.exit_code,
                    error=task.error,
                    stopped=task.state == State.COMPLETED and task.exit_code != 0,
                )
            )

    # -- logs ----------------------------------------------------------------------------------

    async def _logs(self, task_id: str, driver_name: str) -> tuple[bytes, bytes] | None:
        """The task's (stdout, stderr); None when this worker knows nothing of it.

        `driver_name` comes from the manager, which knows tasks this worker may have forgotten
        in a restart; their output is still in the driver's files.
        """
        entry = self.tasks.get(task_id)
        name = entry.task.driver if entry is not None else driver_name
        driver = self.drivers.get(name)
        if driver is None:
            return None
        return await driver.logs(task_id)
