"""The process driver: a task's `Cmd` as a local process, like Nomad's raw_exec.

Each task gets a working directory `<root>/<task id>/`. Its process is started, waited for and
recorded by a small supervisor, a shim (`orc/drivers/shim.py`, forked by a launcher the driver
starts once; the launches of a burst share one), which outlives the worker: a task that ends
while orc is down keeps its real exit status. The worker and the shim speak through the
directory's files:

- `launch`: the task's journal. First the intent, written by the worker **before** it asks
  for the process: the task, its attempt (`RestartCount`) and a launch ID. A launch is carried
  out only while its intent stands, and the directory's lock (held by the shim until it has
  recorded the process's end) tells recovery whether a shim is at work on it. So after a
  SIGKILL at any instant a restarted worker finds the run that was started (and adopts it) or
  knows that none was (and starts one): an attempt is never started twice. Then, appended by
  the shim: the run (the pids and start times of the process and of the shim) once the
  process runs, and its exit (code and error) once it has ended.
- `stdout`, `stderr`: the task's output, appended to across its runs.

The process gets a clean environment: a minimal PATH, HOME (its working directory), the task's
`Env` and orc's `ORC_TASK_ID` and `ORC_TASK_NAME`; nothing of orc's own environment.

Creating a file or directory can cost a millisecond on some disks (it does on the benchmark
machine), and a launch needs several. So the driver keeps a few spare working directories, with
their empty files, ready in `<root>/.spare/` (`keep_spares`, run in the worker's nursery): a
launch renames one to `<root>/<task id>/`, which costs a few microseconds, and the next spare
is made in the background. Without a spare (a burst used them all, or the disk refused) a
launch makes its directory itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import trio

from eventlog.groupcommit import GroupCommit
from orc.core.model import Task
from orc.drivers.base import (
    DriverUnavailable,
    Exit,
    Handle,
    LaunchError,
    LaunchIntent,
    last_line,
    own_handle,
    read_exit_record,
    read_intent,
    read_old_record,
    read_output,
    record_exit,
    run_key,
    task_argv,
    task_environment,
    write_intent,
)
from orc.drivers.shim import (
    ABANDONED,
    EXIT,
    LAUNCH,
    OUTPUT,
    RUN,
    RUN_LINE,
    SPAWNING,
    start_ticks,
)

log = logging.getLogger("orc.drivers.process")

SPARES = 8  # spare working directories kept ready
TASK_PATH = "/usr/local/bin:/usr/bin:/bin"  # the PATH a task gets unless its Env sets one
LAUNCH_TIMEOUT = 30.0  # seconds a launch waits for the launcher's answer before reading files
MESSAGE_BYTES = 1 << 16  # a message of launch requests carries this much at most (but one)
SETTLE_TIMEOUT = 10.0  # seconds recovery waits for a shim that is starting its process
SHIM = Path(__file__).with_name("shim.py")
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC

# why an exit status is unknown, as the task's Error
UNKNOWN_ADOPTED = (
    "exit status unknown: orc adopted this process after a restart and a process that is not"
    " orc's child cannot be asked how it ended"
)
UNKNOWN_ENDED = "the process ended while orc was not running; its exit status is unknown"
UNKNOWN_SHIM_GONE = (
    "exit status unknown: the process's supervisor (its shim) ended without recording how it ended"
)
UNCERTAIN_START = (
    "orc stopped while this task's process was being started, and the process's supervisor"
    " ended too, so orc cannot tell whether it started; it is not started again"
)


def process_environment(task: Task, workdir: Path) -> dict[str, str]:
    """All a task's process gets of its environment: a minimal PATH and HOME (its working
    directory, so what it keeps in ~ stays with the task), then its own `Env`, then orc's
    task variables. Never orc's own environment: it may hold ORC_TOKEN."""
    return {"PATH": TASK_PATH, "HOME": str(workdir), **task_environment(task)}


async def _exited(pid: int, ticks: int = 0) -> None:
    """Until process `pid` (started at `ticks`, when known) has ended: a pidfd is readable
    then, child of orc or not. A pid that now names another process means ours has ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if ticks and start_ticks(pid, zombie=True) not in (ticks, None):
            return
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


class ProcessHandle(Handle):
    """A task's process: `pid` (also its process group) and its start time, which the worker
    waits on, and its shim's pid and start time (0 for a process without a shim: one adopted
    from an orc that had none, or whose shim died, so its exit status is unknown). `launch`
    and `attempt` name the run, as its records do."""

    __slots__ = ("attempt", "launch", "pid", "shim_pid", "shim_ticks", "start_ticks")

    def __init__(
        self,
        task_id: str,
        pid: int,
        start_ticks: int = 0,
        shim_pid: int = 0,
        shim_ticks: int = 0,
        launch: str = "",
        attempt: int = 0,
    ) -> None:
        super().__init__(task_id)
        self.pid = pid
        self.start_ticks = start_ticks
        self.shim_pid = shim_pid
        self.shim_ticks = shim_ticks
        self.launch = launch
        self.attempt = attempt


class RunRecord(msgspec.Struct, frozen=True):
    """The run line of the journal (`run.json` before it), written by the shim once the
    process runs. Records written before orc had shims hold only the task, the pid and its
    start time: they decode with the defaults."""

    task: Task
    pid: int
    start_ticks: int
    attempt: int = 0
    launch: str = ""
    shim_pid: int = 0
    shim_ticks: int = 0

    def handle(self) -> ProcessHandle:
        return ProcessHandle(
            self.task.id,
            self.pid,
            self.start_ticks,
            self.shim_pid,
            self.shim_ticks,
            self.launch,
            self.attempt,
        )


class LaunchRequest(msgspec.Struct, frozen=True):
    """A line to the launcher: start `argv` with `env` in `dir` for this launch."""

    launch: str
    dir: str
    argv: list[str]
    env: dict[str, str]


class LaunchReply(msgspec.Struct, frozen=True):
    """A line from the launcher or a shim: the process runs (`pid`...), could not start
    (`error`), or the request was not carried out (`resolve`: read the files)."""

    launch: str
    pid: int = 0
    start_ticks: int = 0
    shim_pid: int = 0
    shim_ticks: int = 0
    error: str = ""
    resolve: str = ""


_GONE = LaunchReply("")  # expected no more: the launcher's end went while a request was sent


def _messages(requests: list[LaunchRequest]) -> Iterator[tuple[list[str], bytes]]:
    """`requests` as messages to the launcher (JSON lists), each with the launch IDs it
    carries: at most MESSAGE_BYTES each, but for a request larger on its own."""
    launches: list[str] = []
    parts: list[bytes] = []
    size = 0
    for request in requests:
        part = msgspec.json.encode(request)
        if parts and size + len(part) + 1 > MESSAGE_BYTES:
            yield launches, b"[" + b",".join(parts) + b"]"
            launches, parts, size = [], [], 0
        launches.append(request.launch)
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield launches, b"[" + b",".join(parts) + b"]"


class _Launch:
    """A launch on its way in a group (`ProcessDriver._launch_group`, a `GroupCommit`): what
    it asks for, and what preparing it found. `outcome`: this attempt ran before a restart
    of orc (how it is, or how it ended); `error`: it cannot go ahead. Neither: its request was
    sent, and its reply is awaited."""

    __slots__ = (
        "abandoned",
        "argv",
        "done",
        "env",
        "error",
        "id",
        "lead",
        "outcome",
        "task",
        "workdir",
    )

    def __init__(
        self, task: Task, workdir: Path, launch: str, argv: list[str], env: dict[str, str]
    ) -> None:
        self.task = task
        self.workdir = workdir
        self.id = launch
        self.argv = argv
        self.env = env
        self.outcome: ProcessHandle | Exit | None = None
        self.error: LaunchError | None = None
        self.done = trio.Event()
        self.lead = False
        self.abandoned = False  # its `start` returned or was cancelled


# -- the working directory's files (blocking: called in threads) ---------------------------------


def _make_spare(spares: Path) -> Path:
    """A spare working directory with the files a launch writes, for a task not known yet."""
    spares.mkdir(parents=True, exist_ok=True)
    spare = spares / str(uuid.uuid4())
    spare.mkdir()
    for name in (*OUTPUT, LAUNCH):  # the task's output, and its journal
        os.close(os.open(spare / name, _FLAGS, 0o644))
    return spare


def _old_spares(spares: Path) -> list[Path]:
    """Spares left by an earlier run of the driver (empty; a missing file is made at launch).
    Empty when `.spare` is missing or unreadable: making spares then says why."""
    try:
        return [entry for entry in spares.iterdir() if entry.is_dir()]
    except OSError:
        return []


class _RunLine(msgspec.Struct, frozen=True):
    run: RunRecord


def _read_run(workdir: Path) -> RunRecord | None:
    """The run the journal records (the last); else the `run.json` a shim from before the
    journal wrote; None when neither says."""
    found = last_line(workdir, RUN_LINE, _RunLine)
    return found.run if found is not None else read_old_record(workdir / RUN, RunRecord)


@contextlib.contextmanager
def _dir_lock(workdir: Path) -> Iterator[bool]:
    """Try the directory's lock: True when we hold it now, so no shim is at work on the task
    and none can start it until we let go; False when one is (or is being forked)."""
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # lets go of the lock


def _resolve(workdir: Path, task: Task) -> ProcessHandle | Exit | None:
    """What became of this run of `task` (`run_key`) from its files: the live process to
    adopt, how it ended, or None when it never started (its intent, if any, is then marked
    abandoned, so a launcher that still holds the request will not start it late).
    DriverUnavailable when a shim holds the directory but records no process for a while."""
    found = read_intent(workdir)
    if found is None:
        return _resolve_unlaunched(workdir, task)
    intent, _ = found
    if run_key(intent.task) != run_key(task):
        return None  # an earlier run's files: this one was never asked for
    ended = read_exit_record(workdir)
    if ended is not None and ended.launch == intent.launch:
        return ended.exit  # the common case after a restart, without the lock
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        with _dir_lock(workdir) as mine:
            ended = read_exit_record(workdir)
            if ended is not None and ended.launch == intent.launch:
                return ended.exit
            record = _read_run(workdir)
            if record is not None and record.launch != intent.launch:
                record = None
            if mine:
                return _without_shim(workdir, intent, record)
            if record is not None:
                return record.handle()  # its shim runs, and so (until it records) does it
        # a shim is being forked or is starting the process: it records it in a moment
        if time.monotonic() > deadline:
            raise DriverUnavailable(
                f"the supervisor of {workdir.name} has recorded no process for {SETTLE_TIMEOUT:g} s"
            )
        time.sleep(0.01)


def _without_shim(
    workdir: Path, intent: LaunchIntent, record: RunRecord | None
) -> ProcessHandle | Exit | None:
    """`_resolve` when no shim is alive and we hold the lock, so the files are final."""
    if record is not None:
        # its shim died (killed) without recording the end: the process may live on
        if start_ticks(record.pid) == record.start_ticks:
            return ProcessHandle(
                record.task.id,
                record.pid,
                record.start_ticks,
                launch=intent.launch,
                attempt=intent.attempt,
            )
        result = Exit(None, UNKNOWN_SHIM_GONE)
    else:
        _, marks = read_intent(workdir) or (intent, [])
        if SPAWNING not in marks:
            if ABANDONED not in marks:
                with open(workdir / LAUNCH, "ab") as f:
                    f.write(ABANDONED + b"\n")
            return None
        result = Exit(None, UNCERTAIN_START)
    record_exit(workdir, result, intent.launch, intent.attempt)
    return result


def _resolve_unlaunched(workdir: Path, task: Task) -> ProcessHandle | Exit | None:
    """A directory without an intent: nothing was asked, or an orc from before shims ran the
    task (its `run.json` then names the process, which is adopted without an exit status)."""
    record = _read_run(workdir)
    if record is None or record.launch or run_key(record.task) != run_key(task):
        return None
    ended = read_exit_record(workdir)
    if ended is not None:
        return ended.exit
    if start_ticks(record.pid) == record.start_ticks:
        return ProcessHandle(
            record.task.id, record.pid, record.start_ticks, attempt=task.restart_count
        )
    return Exit(None, UNKNOWN_ENDED)


def _prepare_launch(
    workdir: Path, task: Task, launch: str, spare: Path | None, ours: str
) -> bool | ProcessHandle | Exit:
    """Everything a launch does in files before the process is asked for, in one trip to a
    thread: the working directory (a spare renamed, or made) and the intent. Returns whether
    `spare` became the directory; or, when this run of the task (`run_key`) was launched
    before orc restarted (its intent is not one of this driver's, whose launch IDs start with
    `ours`), what became of it."""
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
            earlier = read_intent(workdir)
            if earlier is None or not earlier[0].launch.startswith(ours):
                found = _resolve(workdir, task)
                if found is not None:
                    return found
            for stale in (RUN, EXIT):  # a run of this task ended before: this is a new one
                (workdir / stale).unlink(missing_ok=True)
    write_intent(workdir, LaunchIntent(launch, task.restart_count, task))
    return used


_RECORDING = Exit(None, "")  # `_exit_of`: its shim has not let go of the directory yet


def _exit_of(workdir: Path, launch: str) -> Exit | None:
    """Once the run `launch` has ended: how, by its shim's record; `_RECORDING` while its
    shim still holds the directory (it is writing the record); None when the shim let go
    without one (it was killed, or the disk refused the record)."""
    for _ in range(2):
        ended = read_exit_record(workdir)
        if ended is not None and ended.launch == launch:
            return ended.exit
        try:
            with _dir_lock(workdir) as mine:
                if not mine:
                    return _RECORDING
        except OSError:
            return None  # the directory is gone: nothing will be recorded there
        # free: the shim is done with it; a record it wrote just before is read once more
    return None


def _prepare_launches(
    launches: list[tuple[Path, Task, str, Path | None]], ours: str
) -> list[bool | ProcessHandle | Exit | LaunchError]:
    """`_prepare_launch` for each of a group of launches (working directory, task, launch ID,
    spare), each outcome on its own: an error preparing one does not stop the others."""
    outcomes: list[bool | ProcessHandle | Exit | LaunchError] = []
    for workdir, task, launch, spare in launches:
        try:
            outcomes.append(_prepare_launch(workdir, task, launch, spare, ours))
        except OSError as exc:
            # a spare the failed launch did not use is left on disk for the next start to find
            outcomes.append(
                LaunchError(
                    f"cannot prepare the working directory {workdir}: {exc.strerror or exc}"
                )
            )
        except DriverUnavailable as exc:
            outcomes.append(LaunchError(f"cannot tell whether the process started: {exc}"))
    return outcomes


def _saved_tasks(root: Path) -> list[Task]:
    """The tasks this driver has records of (to adopt the live ones after a restart)."""
    tasks: list[Task] = []
    if not root.is_dir():
        return tasks
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue  # .spare, the launcher's log
        if (launched := read_intent(entry)) is not None:
            tasks.append(launched[0].task)
        elif (record := _read_run(entry)) is not None:
            tasks.append(record.task)
    return tasks


# -- the launcher --------------------------------------------------------------------------------


class Launcher:
    """The worker's end of the launcher (`orc/drivers/shim.py`), a process started on first
    use and again if it ends. Requests and replies are messages on a `SOCK_SEQPACKET` socket
    (the launcher's stdin is its other end). Whoever waits for a reply reads, one at a time,
    and hands out each reply that comes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._process: trio.Process | None = None
        self._socket: trio.socket.SocketType | None = None
        self._start_lock = trio.Lock()
        self._send_lock = trio.Lock()
        self._read_lock = trio.Lock()
        self._waiting: dict[str, LaunchReply | None] = {}

    async def start(self) -> tuple[trio.Process, trio.socket.SocketType]:
        """The launcher and our end of its socket, started now if it is not running."""
        async with self._start_lock:
            process, sock = self._process, self._socket
            if process is None or sock is None or process.poll() is not None:
                if process is not None:
                    log.warning(
                        "the process launcher of %s ended (status %s); starting another",
                        self.root,
                        process.returncode,
                    )
                if sock is not None:
                    sock.close()  # the shims it left idle see the end, and go
                process, sock = self._process, self._socket = await self._spawn()
            return process, sock

    async def _spawn(self) -> tuple[trio.Process, trio.socket.SocketType]:
        def open_log() -> int:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.root / ".launcher.log", _FLAGS, 0o644)

        errors = await trio.to_thread.run_sync(open_log)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-I", "-S", str(SHIM)],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=self.root,
                env={"PATH": TASK_PATH},  # none of orc's settings: its shims outlive it
                start_new_session=True,  # a Ctrl-C at orc's terminal does not reach it
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(errors)
        return process, trio.socket.from_stdlib_socket(ours)

    async def send(self, requests: list[LaunchRequest]) -> dict[str, LaunchError]:
        """Send `requests` in as few messages as fit (a shim takes a message whole), each
        reply to be awaited with `reply`. Returns the requests refused, by launch ID: those
        larger than a message may be. OSError when the launcher cannot be started."""
        _, sock = await self.start()
        refused: dict[str, LaunchError] = {}
        for launches, message in _messages(requests):
            for launch in launches:
                self._waiting[launch] = None
            try:
                async with self._send_lock:
                    await sock.send(message)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                for launch in launches:  # replaced meanwhile: the launch is tried again
                    self._waiting[launch] = _GONE
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    for launch in launches:
                        self._waiting[launch] = _GONE  # no reply can come: the files tell
                elif len(launches) == 1:
                    refused[launches[0]] = LaunchError(
                        f"its Cmd and Env take {len(message)} bytes, more than a launch carries"
                    )
                else:  # the socket takes less than MESSAGE_BYTES: one at a time, then
                    alone = [r for r in requests if r.launch in launches]
                    for one in alone:
                        refused |= await self.send([one])
        return refused

    async def reply(self, launch: str) -> LaunchReply | None:
        """The reply to the request `launch` (sent with `send`); None when none can come (the
        launcher ended) or none came within LAUNCH_TIMEOUT: the files tell then."""
        process, sock = self._process, self._socket
        if process is None or sock is None or launch not in self._waiting:
            return None
        with trio.move_on_after(LAUNCH_TIMEOUT):
            while (reply := self._waiting[launch]) is None:
                async with self._read_lock:
                    waiting = self._waiting[launch] is None
                    if waiting and not await self._read(process, sock):
                        return None
            return None if reply is _GONE else reply
        log.warning("the process launcher of %s did not answer %s", self.root, launch)
        return None

    def forget(self, launch: str) -> None:
        """Stop expecting a reply to `launch` (it came, or nobody waits for it any more)."""
        self._waiting.pop(launch, None)

    async def _read(self, process: trio.Process, sock: trio.socket.SocketType) -> bool:
        """Read a reply (waiting a second at most) and hand it out. False once no more can
        come on `sock`: the launcher ended, or another replaced it."""
        if sock is not self._socket:
            return False
        with trio.move_on_after(1.0):
            try:
                data = await sock.recv(65536)
            except (trio.ClosedResourceError, OSError):
                return False  # closed under us (another launcher replaced it): the files tell
            if not data:
                return False  # the launcher and every shim it forked have let go
            try:
                reply = msgspec.json.decode(data, type=LaunchReply)
            except msgspec.DecodeError:
                log.warning("the process launcher of %s said %r", self.root, data)
                return True
            if reply.launch in self._waiting:
                self._waiting[reply.launch] = reply
            return True
        return process.poll() is None

    async def aclose(self) -> None:
        """Close our end of its socket: it ends (the shims running tasks live on)."""
        if self._socket is not None:
            self._socket.close()
        if self._process is not None:
            await self._process.wait()


# -- the driver ----------------------------------------------------------------------------------


class ProcessDriver:
    name = "process"

    def __init__(self, root: Path, stop_grace: float = 5.0) -> None:
        # absolute: the launcher and its shims work in other directories than ours
        self.root = root.absolute()
        self.stop_grace = stop_grace
        # File system work runs in threads: on some disks an open costs half a millisecond.
        self._files = trio.CapacityLimiter(4)
        self._spares: list[Path] = []
        self._spare_taken = trio.Event()
        self._launcher = Launcher(root)
        self._launches = GroupCommit(self._launch_group)
        # launch IDs: this driver's own start with `_ours`, so an intent it finds on disk
        # tells a run it made from one an earlier orc made
        self._ours = f"{uuid.uuid4().hex[:12]}."
        self._launch_ids = itertools.count(1)

    def workdir(self, task_id: str) -> Path:
        return self.root / task_id

    async def prepare(self) -> None:
        """The work done ahead of launches: the launcher, and spare working directories."""
        try:
            await self._launcher.start()
        except OSError as exc:
            log.warning("cannot start the process launcher in %s yet: %s", self.root, exc)
        await self.keep_spares()

    async def aclose(self) -> None:
        """Stop the launcher (its shims and their processes live on)."""
        await self._launcher.aclose()

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

    async def start(self, task: Task) -> ProcessHandle | Exit:
        argv = task_argv(task)
        workdir = self.workdir(task.id)
        env = process_environment(task, workdir)
        for _ in range(2):  # once more if the launcher ended before it forked the shim
            launch = _Launch(task, workdir, f"{self._ours}{next(self._launch_ids)}", argv, env)
            try:
                await self._launches.submit(launch)
                if launch.outcome is not None:
                    return launch.outcome  # this attempt ran before a restart of orc
                if launch.error is not None:
                    raise launch.error
                reply = await self._launcher.reply(launch.id)
            finally:
                launch.abandoned = True
                self._launcher.forget(launch.id)
            if reply is not None and reply.pid:
                return ProcessHandle(
                    task.id,
                    reply.pid,
                    reply.start_ticks,
                    reply.shim_pid,
                    reply.shim_ticks,
                    launch.id,
                    task.restart_count,
                )
            if reply is not None and reply.error:
                raise LaunchError(reply.error)
            # no answer, or not carried out: the files tell what became of it
            try:
                found = await trio.to_thread.run_sync(_resolve, workdir, task, limiter=self._files)
            except DriverUnavailable as exc:
                raise LaunchError(f"cannot tell whether the process started: {exc}") from None
            if found is not None:
                return found
        raise LaunchError(
            f"orc's process launcher did not start the process (see {self.root}/.launcher.log)"
        )

    async def _launch_group(self, group: list[_Launch]) -> None:
        """The launches that came while the last group was on its way, together: their
        working directories and intents (`_prepare_launch`) in one trip to a thread, then
        their requests to the launcher in as few messages as fit. In a burst of launches a
        trip to a thread and a message each cost the worker more than the launches did."""
        spares = [self._spares.pop() if self._spares else None for _ in group]
        try:
            try:
                prepared = await trio.to_thread.run_sync(
                    _prepare_launches,
                    [
                        (launch.workdir, launch.task, launch.id, spare)
                        for launch, spare in zip(group, spares, strict=True)
                    ],
                    self._ours,
                    limiter=self._files,
                )
            except Exception as exc:  # not the disk's refusal (each launch has its own): a bug
                log.exception("cannot prepare %d launches", len(group))
                error = LaunchError(f"cannot prepare the working directory: {exc!r}")
                prepared = [error] * len(group)
                spares = [None] * len(group)  # where they are now is unknown: left on disk
            for spare, outcome in zip(spares, prepared, strict=True):
                if spare is not None and outcome is not True:
                    # kept for the next launch (keep_spares may have made one more: harmless)
                    self._spares.append(spare)
            requests = []
            for launch, outcome in zip(group, prepared, strict=True):
                if isinstance(outcome, LaunchError):
                    launch.error = outcome
                elif not isinstance(outcome, bool):
                    launch.outcome = outcome
                else:
                    requests.append(
                        LaunchRequest(launch.id, str(launch.workdir), launch.argv, launch.env)
                    )
            try:
                refused = await self._launcher.send(requests) if requests else {}
            except OSError as exc:
                error = LaunchError(f"cannot start orc's process launcher: {exc}")
                refused = {request.launch: error for request in requests}
            for launch in group:
                launch.error = refused.get(launch.id, launch.error)
                if launch.abandoned:  # its start was cancelled meanwhile: nobody will read
                    self._launcher.forget(launch.id)
        finally:
            # after the launches, so that making the next spare does not slow them down
            self._spare_taken.set()
            for launch in group:
                launch.done.set()

    async def wait(self, handle: Handle) -> Exit:
        """Until the process ends: its shim's record of how it ended."""
        handle = own_handle(handle, ProcessHandle)
        workdir = self.workdir(handle.task_id)
        try:
            await _exited(handle.pid, handle.start_ticks)
            result = await self._recorded(workdir, handle) if handle.shim_pid else None
            if result is None:
                # its shim died before it (killed), or it has none (an orc without shims
                # started it): it is no child of ours, so how it ended cannot be known
                result = Exit(None, UNKNOWN_SHIM_GONE if handle.launch else UNKNOWN_ADOPTED)
                await trio.to_thread.run_sync(
                    record_exit, workdir, result, handle.launch, handle.attempt
                )
        finally:
            handle.exited.set()
        return result

    async def _recorded(self, workdir: Path, handle: ProcessHandle) -> Exit | None:
        """Once the process has ended: how, by its shim's record; None when the shim let go
        of the directory without one. The shim writes it as soon as it learns of the end, a
        moment after the end wakes us: so look again, a while longer each time, while the
        shim still holds the directory (its other processes keep it alive, so its own end
        says nothing)."""
        delay = 0.001
        while True:
            ended = await trio.to_thread.run_sync(
                _exit_of, workdir, handle.launch, limiter=self._files
            )
            if ended is not _RECORDING:
                return ended
            await trio.sleep(delay)
            delay = min(delay * 2, 0.5)

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

    async def find(self, task: Task) -> ProcessHandle | Exit | None:
        """After a restart: the live process of this attempt to adopt, how it ended, or None
        if it never started."""
        return await trio.to_thread.run_sync(
            _resolve, self.workdir(task.id), task, limiter=self._files
        )

    async def saved_tasks(self) -> list[Task]:
        """The tasks this driver has records of (to adopt the live ones after a restart)."""
        return await trio.to_thread.run_sync(_saved_tasks, self.root, limiter=self._files)

    async def logs(self, task_id: str) -> tuple[bytes, bytes]:
        return await trio.to_thread.run_sync(
            read_output, self.workdir(task_id), limiter=self._files
        )
