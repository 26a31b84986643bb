"""The Worker actor ends every task it cannot run: whatever a launch or a driver does wrong
(a NUL byte that slipped past the edge, a missing program, permission denied, a driver's own
exception), the task is reported Failed with the reason within a second, through the normal
update path, and the worker carries on. Orders go to the actor directly, below the HTTP edge
that would refuse some of them."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import trio

from actors import Actor, ActorRef, Supervisor
from orc.clock import now
from orc.core.events import TaskExited, TaskLost, TaskStarted
from orc.core.messages import Orders, Ping, RunTask, StopTask
from orc.core.model import NodeInfo, State, Task
from orc.drivers.base import Driver, Exit, Handle
from orc.drivers.process import ProcessDriver, ProcessHandle
from orc.shell.worker import Worker


class Updates(Actor[object]):
    """Stands where the worker's proxy stands: keeps what the worker reports."""

    def __init__(self, seen: list[object], changed: Callable[[], None]) -> None:
        self.seen = seen
        self.changed = changed

    async def handle(self, message: object) -> object:
        self.seen.append(message)
        self.changed()
        return None


class FailingStart(ProcessDriver):
    """A driver with a bug in `start`: an exception that is not a LaunchError."""

    async def start(self, task: Task) -> Handle | Exit:
        raise RuntimeError("a bug in the driver")


class FailingWait(ProcessDriver):
    """A driver with a bug in `wait`: the process runs, then the driver loses track of it."""

    async def wait(self, handle: Handle) -> Exit:
        assert isinstance(handle, ProcessHandle)
        os.killpg(handle.pid, signal.SIGKILL)
        raise RuntimeError("a bug while waiting")


@dataclass
class Node:
    worker: ActorRef[object]
    seen: list[object] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, task: Task) -> TaskExited:
        """Order `task` run; its TaskExited, which must come within a second."""
        await self.worker.ask(Orders((RunTask(task),)))
        with trio.fail_after(1):
            while True:
                for update in self.seen:
                    if isinstance(update, TaskExited) and update.task_id == task.id:
                        return update
                await self._changed.wait()


@asynccontextmanager
async def worker_node(drivers: dict[str, Driver]) -> AsyncIterator[Node]:
    """A Worker under a supervisor that allows no crash: one would end the test."""
    sup = Supervisor("test", max_restarts=0, within=1.0)
    holder: list[Node] = []
    updates = sup.add("updates", lambda: Updates(holder[0].seen, holder[0].changed))
    info = NodeInfo("n1", "in-process", tuple(drivers))
    worker = sup.add("n1", lambda: Worker(info, drivers, updates, now))
    holder.append(Node(worker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        yield holder[0]
        assert await worker.ask(Ping()) is None  # still up
        nursery.cancel_scope.cancel()


def _task(cmd: list[str], env: list[str] | None = None, driver: str = "process") -> Task:
    return Task(
        id=str(uuid.uuid4()),
        name="t",
        cmd=cmd,
        env=env,
        driver=driver,
        state=State.SCHEDULED,
    )


def _script(tmp_path: Path) -> str:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    return str(script)


CASES = [
    (lambda tmp: _task(["echo", "a\0b"]), "holds a NUL byte"),
    (lambda tmp: _task(["echo"], env=["A=b\0c"]), "without NUL bytes"),
    (lambda tmp: _task(["echo"], env=["NOT_NAME_VALUE"]), "is not NAME=value"),
    (lambda tmp: _task([]), "Cmd is empty"),
    (lambda tmp: _task(["/nonexistent/program"]), "No such file or directory"),
    (lambda tmp: _task([_script(tmp)]), "Permission denied"),
    (lambda tmp: _task(["true"], driver="broken-start"), "RuntimeError('a bug in the driver')"),
    (lambda tmp: _task(["sleep", "30"], driver="broken-wait"), "lost track of it"),
    (lambda tmp: _task(["true"], driver="docker"), "node n1 has no docker driver"),
]


@pytest.mark.parametrize(("make", "reason"), CASES)
async def test_a_task_the_worker_cannot_run_is_failed_within_a_second(
    tmp_path: Path, make: Callable[[Path], Task], reason: str
) -> None:
    drivers: dict[str, Driver] = {
        "process": ProcessDriver(tmp_path / "p", stop_grace=1),
        "broken-start": FailingStart(tmp_path / "s", stop_grace=1),
        "broken-wait": FailingWait(tmp_path / "w", stop_grace=1),
    }
    async with worker_node(drivers) as node:
        task = make(tmp_path)
        ended = await node.run(task)
        assert ended.exit_code is None and not ended.stopped
        assert reason in ended.error, ended.error
        # the worker goes on running tasks
        ok = await node.run(_task(["true"]))
        assert ok.exit_code == 0 and ok.error == ""
    started = {u.task_id for u in node.seen if isinstance(u, TaskStarted)}
    assert (task.id in started) == (task.driver == "broken-wait")


async def test_an_order_that_comes_again_runs_nothing_twice(tmp_path: Path) -> None:
    """A proxy sends an order again when an answer is late, though the first arrived: the
    worker reports the run it has, and starts nothing. A restart (a new attempt) runs; so does
    the same ID submitted anew once the manager forgot it (a new CreatedAt)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    drivers: dict[str, Driver] = {"process": ProcessDriver(tmp_path / "p", stop_grace=1)}
    script = f'touch "{marks}/$ORC_TASK_ID.$$"'
    task = msgspec.structs.replace(
        _task(["sh", "-c", script]), created_at="2026-01-01T00:00:00+00:00"
    )
    async with worker_node(drivers) as node:
        first = await node.run(task)
        assert first.exit_code == 0
        node.seen.clear()
        again = await node.run(task)  # the same order once more
        assert (again.exit_code, again.error) == (0, "")
        assert len(list(marks.iterdir())) == 1
        node.seen.clear()
        await node.run(msgspec.structs.replace(task, restart_count=1))
        node.seen.clear()
        anew = msgspec.structs.replace(task, created_at="2026-01-02T00:00:00+00:00")
        await node.run(anew)
    assert len(list(marks.iterdir())) == 3


async def test_a_task_stopped_in_the_batch_that_runs_it_never_starts(tmp_path: Path) -> None:
    """A DELETE right after the POST: the stop arrives before the launch began, so the task
    ends (stopped, Completed) without its process ever running."""
    marker = tmp_path / "ran"
    task = _task(["sh", "-c", f"touch {marker}; sleep 30"])
    drivers: dict[str, Driver] = {"process": ProcessDriver(tmp_path / "tasks", stop_grace=1)}
    async with worker_node(drivers) as node:
        await node.worker.ask(Orders((RunTask(task), StopTask(task.id))))
        with trio.fail_after(2):
            while not any(isinstance(u, TaskExited) for u in node.seen):
                await node._changed.wait()
        [ended] = [u for u in node.seen if isinstance(u, TaskExited)]
        assert ended.stopped and ended.error == "stopped before it started"
        assert not any(isinstance(u, TaskStarted) for u in node.seen)
        await trio.sleep(0.3)
        assert not marker.exists()


async def test_a_stop_for_a_task_the_worker_does_not_run_says_so(tmp_path: Path) -> None:
    """So that a task the manager still thinks runs here (its order or the worker's memory
    of it was lost) ends when it is stopped, instead of staying stuck."""
    drivers: dict[str, Driver] = {"process": ProcessDriver(tmp_path / "tasks", stop_grace=1)}
    ghost = str(uuid.uuid4())
    async with worker_node(drivers) as node:
        await node.worker.ask(Orders((StopTask(ghost),)))
        [lost] = [u for u in node.seen if isinstance(u, TaskLost)]
        assert lost.task_id == ghost and "does not run it" in lost.error
