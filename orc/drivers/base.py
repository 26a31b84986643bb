"""What every driver shares: the interface the worker calls, how a workload ended, why it
could not start, and the files a task's working directory keeps."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import msgspec

from orc.core.model import Task


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


class Driver(Protocol):
    """What the Worker asks of a driver. Every call is async: drivers do their blocking work
    (files, processes, the Docker SDK) in threads, never on the event loop.

    A handle (what `start` and `find` return) has `container_id`, `host_ports`,
    `stop_requested` and an `exited` trio.Event.

    A driver may also have `async def keep_spares()`: work done ahead of launches, which the
    Worker runs in its nursery for as long as it runs (the process driver's spare directories).
    """

    name: str

    async def start(self, task: Task) -> Any:
        """Run the task; LaunchError with the reason when it cannot."""

    async def wait(self, handle: Any) -> Exit:
        """Until the workload ends; how it ended, also recorded in its working directory."""

    async def stop(self, handle: Any) -> None:
        """Stop it (gracefully, then by force) and return once it has ended."""

    async def find(self, task_id: str) -> Any:
        """After a restart: the live workload to adopt (a handle), how it ended (an Exit), or
        None if it never ran. DriverUnavailable when the driver cannot tell now."""

    async def saved_tasks(self) -> list[Task]:
        """The tasks this driver has workloads or records of, to adopt after a restart."""

    async def logs(self, task_id: str) -> tuple[bytes, bytes]:
        """The task's stdout and stderr, kept after it ends."""


class DriverUnavailable(Exception):
    """The driver cannot tell now (its engine does not answer): ask again later, and never
    take "cannot tell" for "gone"."""


class LaunchError(Exception):
    """The workload could not be started; the message is the task's `Error`."""
