"""What every driver shares: the interface the worker calls, the handle of a running workload,
how a workload ended, why it could not start, and the files a task's working directory keeps."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
import trio

from orc.core.model import HostPort, Task


class Exit(msgspec.Struct, frozen=True):
    """How a workload ended. `code` is None when nobody can know it."""

    code: int | None
    error: str


class ExitRecord(msgspec.Struct, frozen=True):
    """How one launch of a task ended: an `{"exit": ...}` line of its journal (the `launch`
    file; an `exit` file of its own before orc kept a journal). `launch` and `attempt` (the
    task's `RestartCount` then) tell this launch's end from an earlier one's after a restart
    of orc; records written before orc recorded them decode with the defaults."""

    code: int | None
    error: str
    launch: str = ""
    attempt: int = 0

    @property
    def exit(self) -> Exit:
        return Exit(self.code, self.error)


class _ExitLine(msgspec.Struct, frozen=True):
    exit: ExitRecord


# Both drivers keep, per task, a working directory with the task's output (`stdout`,
# `stderr`) and its journal (`launch`: the intent, then what became of it, a line each; see
# orc/drivers/shim.py): what outlives the process or container, for logs and for a worker
# that restarts. These are blocking file calls: run them in a thread.

JOURNAL = "launch"
EXIT_LINE = b'{"exit":'  # as orc/drivers/shim.py writes it


def append_line(workdir: Path, line: bytes) -> None:
    """Append `line` to the task's journal, in one write, between newlines (see the shim's
    module docstring: a line cut short before it is never glued to it)."""
    fd = os.open(workdir / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b"\n" + line + b"\n")
    finally:
        os.close(fd)


def record_exit(workdir: Path, result: Exit, launch: str = "", attempt: int = 0) -> None:
    """Append how the launch ended to the task's journal (a disk that refuses it leaves the
    exit status unknown after a restart, as it is now)."""
    record = msgspec.json.encode(ExitRecord(result.code, result.error, launch, attempt))
    with contextlib.suppress(OSError):
        workdir.mkdir(parents=True, exist_ok=True)
        append_line(workdir, EXIT_LINE + record + b"}")


def journal_lines(workdir: Path) -> list[bytes] | None:
    """The journal's lines, each whole (a last line without its newline was cut short and is
    left out); None when there is no journal."""
    try:
        data = (workdir / JOURNAL).read_bytes()
    except OSError:
        return None
    return data.split(b"\n")[:-1]


L = TypeVar("L")


def last_line(workdir: Path, prefix: bytes, line_type: type[L]) -> L | None:
    """The journal's last whole line that starts with `prefix`, as `line_type`."""
    for line in reversed(journal_lines(workdir) or []):
        if line.startswith(prefix):
            try:
                return msgspec.json.decode(line, type=line_type)
            except msgspec.DecodeError:
                continue
    return None


def read_old_record(path: Path, record_type: type[L]) -> L | None:
    """A record file of an orc from before the journal (`exit`, `run.json`), if there is one."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=record_type)
    except (OSError, msgspec.DecodeError):
        return None


def read_exit_record(workdir: Path) -> ExitRecord | None:
    """The last exit the journal records; else the `exit` file a shim from before the journal
    wrote; None when neither says."""
    found = last_line(workdir, EXIT_LINE, _ExitLine)
    return found.exit if found is not None else read_old_record(workdir / "exit", ExitRecord)


def run_key(task: Task) -> tuple[str | None, int]:
    """Which run of a task this is: its incarnation (`CreatedAt`, set by the manager when the
    task is submitted, so an ID submitted again once the first was forgotten is a new task) and
    its attempt (`RestartCount`: a restart is a new attempt). Each runs at most once."""
    return task.created_at, task.restart_count


class LaunchIntent(msgspec.Struct, frozen=True):
    """The first line of a task's `launch` file, written before anything is started: which
    attempt of the task is meant to run, under which launch ID. A driver's launch IDs start
    with an ID of its own run, so one it finds tells its own launches from an earlier orc's
    (after a restart: the order to run that attempt came again, and must not run it twice).
    The process driver's shims append marks after it (see orc/drivers/shim.py)."""

    launch: str
    attempt: int
    task: Task


def read_intent(workdir: Path) -> tuple[LaunchIntent, list[bytes]] | None:
    """The intent and the marks after it (`spawning`, `abandoned`; not the records); None when
    there is none (or only an empty file: a spare's, or an intent cut short before anything
    was asked for)."""
    try:
        data = (workdir / JOURNAL).read_bytes()
    except OSError:
        return None
    first, _, rest = data.partition(b"\n")
    try:
        intent = msgspec.json.decode(first, type=LaunchIntent)
    except msgspec.DecodeError:
        return None
    lines = (line.strip() for line in rest.split(b"\n"))
    return intent, [line for line in lines if line and not line.startswith(b"{")]


def write_intent(workdir: Path, intent: LaunchIntent) -> None:
    fd = os.open(workdir / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, msgspec.json.encode(intent) + b"\n")
    finally:
        os.close(fd)


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

    A task's run is identified by its ID and `run_key` (its submission and its attempt): a
    driver runs each at most once per data directory, even when the order to run it comes again
    after a restart of orc. Within one run of the driver, `start` on a task that ended starts it
    again (the Worker never asks that of an attempt it has seen).
    """

    name: str

    async def start(self, task: Task) -> Handle | Exit:
        """Run the task: its handle. LaunchError with the reason when it cannot start. When
        this attempt already ran before orc restarted (the order came again), nothing starts:
        the handle of the workload that still runs, or how it ended."""
        ...

    async def wait(self, handle: Handle) -> Exit:
        """Until the workload ends; how it ended, also recorded in its working directory.
        Sets `handle.exited`."""
        ...

    async def stop(self, handle: Handle) -> None:
        """Set `handle.stop_requested`, stop the workload (gracefully, then by force) and
        return once it has ended."""
        ...

    async def find(self, task: Task) -> Handle | Exit | None:
        """After a restart: the live workload of this attempt of the task to adopt (a handle),
        how it ended (an Exit), or None if it never started. DriverUnavailable when the driver
        cannot tell now."""
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


# -- what a task's workload is given ---------------------------------------------------------


def task_variables(task: Task) -> dict[str, str]:
    """The variables orc sets in every task's environment, over any of the task's own."""
    variables = {"ORC_TASK_ID": task.id}
    if task.name:
        variables["ORC_TASK_NAME"] = task.name
    return variables


def task_environment(task: Task) -> dict[str, str]:
    """The task's `Env` (`NAME=value` items, a later one winning) and then orc's variables:
    all a workload gets of its environment from orc, never orc's own. LaunchError for an item
    no process could be given (no `=`, an empty name, a NUL byte): the edge refuses those, and
    this keeps an older log or another caller from crashing a launch with one."""
    env: dict[str, str] = {}
    for item in task.env or ():
        name, sep, value = item.partition("=")
        if not sep or not name or "\0" in item:
            raise LaunchError(f"Env item {item!r} is not NAME=value without NUL bytes")
        env[name] = value
    env.update(task_variables(task))
    return env


def checked_cmd(task: Task) -> list[str]:
    """The task's `Cmd` (possibly empty: an image has its own), LaunchError for a NUL byte."""
    argv = list(task.cmd or ())
    for arg in argv:
        if "\0" in arg:
            raise LaunchError(f"Cmd item {arg!r} holds a NUL byte, which no program can be given")
    return argv


def task_argv(task: Task) -> list[str]:
    """The task's `Cmd` as a process's argv: LaunchError for an empty one or a NUL byte."""
    argv = checked_cmd(task)
    if not argv or not argv[0]:
        raise LaunchError("Cmd is empty: there is no program to start")
    return argv
