"""The process driver: a task's `Cmd` as a local process, like Nomad's raw_exec.

Each task gets a working directory `<root>/<task id>/` holding `stdout`, `stderr`, `run.json`
(the task, its pid and the process's start time) written once the process runs, and `exit`
written once it has ended. Those files are the driver's memory across an orc restart: `find`
reads them to adopt a process that outlived orc, or to report how it ended.

Creating a file or directory can cost a millisecond on some disks (it does on the benchmark
machine), and a launch needs four. So the driver keeps a few spare working directories, with
their empty files, ready in `<root>/.spare/` (`keep_spares`, run in the worker's nursery): a
launch renames one to `<root>/<task id>/`, which costs a few microseconds, and the next spare
is made in the background. Without a spare (a burst used them all, or the disk refused) a
launch makes its directory itself, as before.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import uuid
from pathlib import Path

import msgspec
import trio

from orc.core.model import Task
from orc.drivers.base import (
    Exit,
    Handle,
    LaunchError,
    own_handle,
    read_output,
    record_exit,
    recorded_exit,
)

log = logging.getLogger("orc.drivers.process")

SPARES = 8  # spare working directories kept ready
_OUTPUT = ("stdout", "stderr")
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


async def _exited(pid: int) -> None:
    """Until process `pid` has ended: a pidfd is readable then, child of orc or not."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


class ProcessHandle(Handle):
    """A running process: one we started (`process`, which can tell its exit status), or one
    adopted after a restart (`process` None: not our child, so its status is unknown)."""

    __slots__ = ("pid", "process")

    def __init__(self, task_id: str, pid: int, process: subprocess.Popen[bytes] | None) -> None:
        super().__init__(task_id)
        self.pid = pid
        self.process = process


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _start_time(pid: int) -> int | None:
    """When a live process started, in clock ticks since boot (None if it is gone or only a
    zombie): with its pid, a process's identity, since pids are reused. Read from /proc
    directly because psutil costs a millisecond here, on the launch path."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


class RunRecord(msgspec.Struct, frozen=True):
    """Written once the process runs: what to adopt after a restart, and how to know it."""

    task: Task
    pid: int
    start_ticks: int


def _make_spare(spares: Path) -> Path:
    """A spare working directory: what `_prepare` would make, for a task not known yet."""
    spares.mkdir(parents=True, exist_ok=True)
    spare = spares / str(uuid.uuid4())
    spare.mkdir()
    for name in (*_OUTPUT, "run.json"):
        os.close(os.open(spare / name, _FLAGS, 0o644))
    return spare


def _old_spares(spares: Path) -> list[Path]:
    """Spares left by an earlier run of the driver (empty; a missing file is made at launch).
    Empty when `.spare` is missing or unreadable: making spares then says why."""
    try:
        return [entry for entry in spares.iterdir() if entry.is_dir()]
    except OSError:
        return []


def _prepare(workdir: Path, spare: Path | None) -> tuple[int, int, bool]:
    """A fresh working directory (stale records of an earlier run removed) and its log files;
    also whether `spare` became the working directory (it can only when there is none yet)."""
    used = False
    if spare is not None and not workdir.exists():
        try:
            spare.rename(workdir)
            used = True
        except OSError:
            pass  # made meanwhile, or the spare is gone: make the directory as below
    if not used:
        try:
            workdir.mkdir(parents=True)
        except FileExistsError:
            for stale in ("run.json", "exit"):
                (workdir / stale).unlink(missing_ok=True)
    out = os.open(workdir / "stdout", _FLAGS, 0o644)
    try:
        return out, os.open(workdir / "stderr", _FLAGS, 0o644), used
    except OSError:
        os.close(out)
        raise


def _spawn(
    workdir: Path, task: Task, env: dict[str, str], spare: Path | None
) -> tuple[subprocess.Popen[bytes], bool]:
    """Everything a launch does that blocks, in one trip to a thread: the working directory,
    the output files, the process (in a session of its own, so that a stop reaches its
    children and it outlives a killed orc) and its run record. Also whether it used `spare`."""
    out, err, used = _prepare(workdir, spare)
    try:
        popen = subprocess.Popen(
            list(task.cmd or ()),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    finally:
        os.close(out)
        os.close(err)
    record = RunRecord(task, popen.pid, _start_time(popen.pid) or 0)
    (workdir / "run.json").write_bytes(msgspec.json.encode(record))
    return popen, used


def _read_run(workdir: Path) -> RunRecord | None:
    try:
        return msgspec.json.decode((workdir / "run.json").read_bytes(), type=RunRecord)
    except (OSError, msgspec.DecodeError):
        return None


class ProcessDriver:
    name = "process"

    def __init__(self, root: Path, stop_grace: float = 5.0) -> None:
        self.root = root
        self.stop_grace = stop_grace
        # File system work runs in threads: on some disks an open costs half a millisecond.
        self._files = trio.CapacityLimiter(4)
        self._spares: list[Path] = []
        self._spare_taken = trio.Event()
        # orc's environment, which tasks inherit: copied once (orc never changes it), since
        # copying os.environ decodes every variable again
        self._environ = dict(os.environ)

    def workdir(self, task_id: str) -> Path:
        return self.root / task_id

    async def prepare(self) -> None:
        """The work done ahead of launches: spare working directories (`keep_spares`)."""
        await self.keep_spares()

    async def keep_spares(self) -> None:
        """Forever: keep SPARES spare working directories ready (see the module's docstring).
        Runs in the worker's nursery; one directory at a time, so that launches, which make
        their own directories when none is left, keep the threads."""
        spares = self.root / ".spare"
        self._spares = await trio.to_thread.run_sync(_old_spares, spares, limiter=self._files)
        failing = False
        while True:
            if len(self._spares) < SPARES:
                try:
                    spare = await trio.to_thread.run_sync(_make_spare, spares, limiter=self._files)
                except OSError as exc:
                    if not failing:
                        log.warning("cannot prepare a working directory in %s: %s", spares, exc)
                    failing = True
                else:
                    failing = False
                    self._spares.append(spare)
                    continue
            # full, or the disk refused: wait for the next launch
            self._spare_taken = trio.Event()
            await self._spare_taken.wait()

    async def start(self, task: Task) -> ProcessHandle:
        env = dict(self._environ)
        # each item is NAME=value (orc.core.validation checks it), so it splits in two
        env.update(item.split("=", 1) for item in task.env or ())  # type: ignore[misc]
        env["ORC_TASK_ID"] = task.id
        spare = self._spares.pop() if self._spares else None
        try:
            popen, used = await trio.to_thread.run_sync(
                _spawn, self.workdir(task.id), task, env, spare, limiter=self._files
            )
        except OSError as exc:
            # a spare the failed launch did not use is left on disk for the next start to find
            argv0 = (task.cmd or [""])[0]
            raise LaunchError(f"cannot start {argv0!r}: {exc.strerror or exc}") from None
        finally:
            # after the launch, so that making the next spare does not slow this one down
            self._spare_taken.set()
        if spare is not None and not used:
            # kept for the next launch (keep_spares may have made one more meanwhile: harmless)
            self._spares.append(spare)
        return ProcessHandle(task.id, popen.pid, popen)

    async def wait(self, handle: Handle) -> Exit:
        """Until the process ends; records how it ended in the `exit` file."""
        handle = own_handle(handle, ProcessHandle)
        try:
            await _exited(handle.pid)
            if handle.process is not None:
                result = self._exit_of(handle.process.wait())  # it has ended: no blocking
            else:
                result = Exit(
                    None,
                    "exit status unknown: orc adopted this process after a restart and a process"
                    " that is not orc's child cannot be asked how it ended",
                )
        finally:
            handle.exited.set()
        workdir = self.workdir(handle.task_id)
        await trio.to_thread.run_sync(record_exit, workdir, result, limiter=self._files)
        return result

    def _exit_of(self, code: int) -> Exit:
        if code == 0:
            return Exit(0, "")
        if code < 0:
            return Exit(128 - code, f"killed by {_signal_name(-code)}")
        return Exit(code, f"exited with status {code}")

    async def stop(self, handle: Handle) -> None:
        """SIGTERM to the task's process group, SIGKILL after the grace period."""
        handle = own_handle(handle, ProcessHandle)
        handle.stop_requested = True
        self._signal(handle, signal.SIGTERM)
        with trio.move_on_after(self.stop_grace):
            await handle.exited.wait()
            return
        self._signal(handle, signal.SIGKILL)
        await handle.exited.wait()

    def _signal(self, handle: ProcessHandle, sig: signal.Signals) -> None:
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise

    async def find(self, task_id: str) -> ProcessHandle | Exit | None:
        return await trio.to_thread.run_sync(self._find, task_id, limiter=self._files)

    def _find(self, task_id: str) -> ProcessHandle | Exit | None:
        """After a restart: the live process to adopt, how it ended, or None if never started."""
        workdir = self.workdir(task_id)
        ended = recorded_exit(workdir)
        if ended is not None:
            return ended
        record = _read_run(workdir)
        if record is None:
            return None
        if _start_time(record.pid) == record.start_ticks:
            return ProcessHandle(task_id, record.pid, None)
        return Exit(None, "the process ended while orc was not running; its exit status is unknown")

    async def saved_tasks(self) -> list[Task]:
        """Tasks this driver has a working directory for (to adopt after a worker restart)."""
        return await trio.to_thread.run_sync(self._saved_tasks, limiter=self._files)

    def _saved_tasks(self) -> list[Task]:
        tasks: list[Task] = []
        if not self.root.is_dir():
            return tasks
        for entry in self.root.iterdir():
            record = _read_run(entry)
            if record is not None:
                tasks.append(record.task)
        return tasks

    async def logs(self, task_id: str) -> tuple[bytes, bytes]:
        return await trio.to_thread.run_sync(
            read_output, self.workdir(task_id), limiter=self._files
        )
