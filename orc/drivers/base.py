"""What every driver shares: the interface the worker calls, the handle of a running workload,
how a workload ended, why it could not start, and the files a task's working directory keeps."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
import trio

from orc.core.model import HostPort, Task


class Exit(msgspec.Struct, frozen=True):
    """How a workload ended. `code` is None when nobody can know it."""

    code: int | None
    error: str


# Both drivers keep, per task, a working directory with the task's output (`stdout`,
# `stderr`) and how it ended (`exit`): what outlives the process or container, for logs and
# for a worker that restarts. These are blocking file calls: run them in a thread.


def record_exit(workdir: Path, result: Exit) -> None:
    with contextlib.suppress(OSError):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "exit").write_bytes(msgspec.json.encode(result))


def recorded_exit(workdir: Path) -> Exit | None:
    try:
        return msgspec.json.decode((workdir / "exit").read_bytes(), type=Exit)
    except (OSError, msgspec.DecodeError):
        return None


def read_output(workdir: Path) -> tuple[bytes, bytes]:
    """What the task wrote to stdout and stderr (empty if nothing, or not yet)."""
    return _read_or_empty(workdir / "stdout"), _read_or_empty(workdir / "stderr")


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class Handle:
    """A workload that runs a task, as `start` and `find` return it: what the Worker may read of
    it, the same for every driver. A driver subclasses it with what only it needs (a pid, say)
    and takes its own handles back in `wait` and `stop` (see `own_handle`).

    `container_id` and `host_ports` go on the task once it runs (empty and None for a process);
    `stop_requested` tells an exit orc asked for (the task ends Completed) from one of its own;
    `exited` is set once `wait` has seen the workload end, so `stop` can wait for it.
    """

    __slots__ = ("container_id", "exited", "host_ports", "stop_requested", "task_id")

    def __init__(
        self,
        task_id: str,
        container_id: str = "",
        host_ports: dict[str, list[HostPort]] | None = None,
    ) -> None:
        self.task_id = task_id
        self.container_id = container_id
        self.host_ports = host_ports
        self.stop_requested = False
        self.exited = trio.Event()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of task {self.task_id}>"


H = TypeVar("H", bound=Handle)


def own_handle(handle: Handle, kind: type[H]) -> H:
    """`handle` as the driver's own kind: a driver only ever gets back the handles it made, so
    anything else is a bug in the caller, said at once."""
    if not isinstance(handle, kind):
        raise TypeError(f"expected a {kind.__name__}, got {handle!r}")
    return handle


class Driver(Protocol):
    """What the Worker asks of a driver. Every call is async: drivers do their blocking work
    (files, processes, the Docker SDK) in threads, never on the event loop.
    """

    name: str

    async def start(self, task: Task) -> Handle:
        """Run the task; LaunchError with the reason when it cannot."""
        ...

    async def wait(self, handle: Handle) -> Exit:
        """Until the workload ends; how it ended, also recorded in its working directory.
        Sets `handle.exited`."""
        ...

    async def stop(self, handle: Handle) -> None:
        """Set `handle.stop_requested`, stop the workload (gracefully, then by force) and
        return once it has ended."""
        ...

    async def find(self, task_id: str) -> Handle | Exit | None:
        """After a restart: the live workload to adopt (a handle), how it ended (an Exit), or
        None if it never ran. DriverUnavailable when the driver cannot tell now."""
        ...

    async def saved_tasks(self) -> list[Task]:
        """The tasks this driver has workloads or records of, to adopt after a restart."""
        ...

    async def logs(self, task_id: str) -> tuple[bytes, bytes]:
        """The task's stdout and stderr, kept after it ends."""
        ...

    async def prepare(self) -> None:
        """Work done ahead of launches (the process driver's spare working directories), which
        the Worker runs in its nursery for as long as it runs. Returns at once when there is
        none."""
        ...


class DriverUnavailable(Exception):
    """The driver cannot tell now (its engine does not answer): ask again later, and never
    take "cannot tell" for "gone"."""


class LaunchError(Exception):
    """The workload could not be started; the message is the task's `Error`."""
