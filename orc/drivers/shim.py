"""The per-task supervisor of process tasks (a "shim", as conmon and containerd call theirs):
the parent of a task's process, which outlives the worker, waits for the process and writes
how it ended into the task's working directory. A worker that was killed and restarted reads
that record, so a task that ended while orc was down keeps its real exit code.

Only the task's parent can learn its exit status, and a Python interpreter takes about 10 ms
to start. So one **launcher** per process driver is started once (`python -I -S shim.py`,
standard library only, in a session of its own) and keeps a few shims forked ahead, idle: a
fork of a small process, not of the worker's, made before it is needed. Its stdin is a
`SOCK_SEQPACKET` socket whose other end is the worker's: each message is a JSON list of
requests, taken whole by exactly one idle shim, which tells the launcher (which forks the
next) and carries them out; each request's reply is one message back. When the worker ends,
its end of the socket closes: the launcher and the idle shims end, and the shims that run
tasks (each in a session of its own) live on.

A shim that has taken a message takes the ones still waiting too, up to BATCH requests, and
supervises every process it starts until the last has ended. A fresh fork costs about 2 ms of
CPU in page copies before it has done anything (a shim is a Python process), twice what
starting the task's process costs; in a burst of launches a shim per launch made the
machine's CPU, not the worker, the limit. A shim per burst pays that once. The price: killing
a shim leaves every process it started without its exit status (the worker says so), as
killing a shim always did for its one.

The worker and its shims speak through the task's working directory, whose files are the
protocol (`orc.drivers.process` is the worker's side):

- `launch`: the task's journal, one line per fact, appended to and never rewritten (but by
  the next run's intent, which starts it anew):
  - the intent, written by the worker before it asks for a launch: one JSON line
    `{"launch": ID, "attempt": N, "task": {...}}`. The shim appends `spawning` just before it
    starts the process; a worker that gives a launch up appends `abandoned`. A request is
    carried out only by whoever holds the directory's lock and finds the intent alone, with
    its own ID.
  - `{"run": {...}}`, appended by the shim once the process runs: the intent's fields and the
    pids and start times of the process and of the shim.
  - `{"exit": {...}}`, appended by the shim once the process has ended: `code` (None when it
    could not start) and `error`, with the launch ID and attempt.

  Each record goes in one `write` to a file opened for appending, between newlines (it starts
  with one too), so a reader sees it whole or not at all: a line a crash or a full disk cut
  short is garbled alone, never glued to the next record. One
  file, not a file per record renamed into place: making a file costs as much as starting the
  process on some disks, and a task already needs its directory and its output.
- the directory itself is locked (`flock`) by the shim from before it looks at the intent
  until it has recorded how the process ended (the task does not inherit the lock). So a
  worker that holds the lock knows that no shim is at work on the task, and that none can
  start it without seeing what the worker appends to the intent first.

Before this journal, shims wrote `run.json` and `exit` files (each renamed into place); the
worker still reads them for a task started by such a shim.

Replies: `{"launch": ID, "pid": ..., "start_ticks": ..., "shim_pid": ..., "shim_ticks": ...}`
once the process runs, `{"launch": ID, "error": ...}` when it could not start (also recorded
in the journal), `{"launch": ID, "resolve": why}` when the request was not carried out (the worker
then reads the files).

This module imports only the standard library: it runs without orc's environment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import os
import select
import signal
import socket
import sys
from typing import Any

LAUNCH = "launch"
RUN = "run.json"  # the run record of a shim from before the journal
EXIT = "exit"  # the exit record of a shim from before the journal
RUN_LINE = b'{"run":'  # how the journal's run line starts
EXIT_LINE = b'{"exit":'  # how the journal's exit line starts
OUTPUT = ("stdout", "stderr")
SPAWNING = b"spawning"
ABANDONED = b"abandoned"

IDLE = 4  # shims kept forked ahead
BATCH = 64  # requests one shim takes at most, while more wait
MAX_REQUEST = 1 << 20  # bytes: a message larger is refused

_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_REPLIED = ("pid", "start_ticks", "shim_pid", "shim_ticks")


def start_ticks(pid: int, zombie: bool = False) -> int | None:
    """When process `pid` started, in clock ticks since boot: with the pid, the process's
    identity, since pids are reused. None if it is gone, or (unless `zombie`) has ended and
    waits to be reaped. Read from /proc directly: psutil costs a millisecond."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z" and not zombie:
        return None
    return int(fields[19])


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(returncode: int) -> tuple[int, str]:
    """A return code (negative: killed by that signal) as the task's exit code and error
    (empty for success)."""
    if returncode == 0:
        return 0, ""
    if returncode < 0:
        return 128 - returncode, f"killed by {signal_name(-returncode)}"
    return returncode, f"exited with status {returncode}"


def launch_error(argv0: str, exc: BaseException) -> str:
    """Why the process could not start, as the task's `Error`."""
    if isinstance(exc, OSError):
        return f"cannot start {argv0!r}: {exc.strerror or exc}"
    return f"cannot start {argv0!r}: {exc}"


def program(argv0: str, path: str) -> str:
    """The file `execvp` would run for `argv0`, looked for on `path` (the task's PATH, not
    ours); FileNotFoundError or PermissionError as `execvp` would fail."""
    if "/" in argv0:
        return argv0
    denied = ""
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", argv0)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)


def spawn(argv: list[str], env: dict[str, str], stdin: int, stdout: int, stderr: int) -> int:
    """Start `argv` (without a shell) in a process group of its own, so a stop signals it and
    its children and not the shim, with the signals Python ignores back to their defaults.
    `posix_spawn`, not `subprocess`: in a freshly forked shim every page Python writes is
    copied first, and `subprocess.Popen` writes four times as many."""
    return os.posix_spawn(
        program(argv[0], env.get("PATH", os.defpath)),
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ],
        setpgroup=0,
        setsigmask=(),
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
    )


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _log(message: str) -> None:
    print(f"orc shim {os.getpid()}: {message}", file=sys.stderr, flush=True)


# -- the launcher --------------------------------------------------------------------------------


def serve() -> None:
    """The launcher: keep IDLE shims forked, until the worker's end of the socket closes."""
    # the shims it forks are reaped by the kernel: the launcher never waits for them
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    gc.freeze()  # what exists now is never collected, so forks share its pages for good
    taken_r, taken_w = os.pipe()
    poller = select.poll()
    poller.register(0, 0)  # only its hangup: the requests are the shims' to take
    poller.register(taken_r, select.POLLIN)
    idle = 0
    while True:
        while idle < IDLE:
            if os.fork() == 0:
                try:
                    os.close(taken_r)
                    _Shim(taken_w).run()
                finally:
                    os._exit(0)
            idle += 1
        for fd, _ in poller.poll():
            if fd == 0:
                return  # the worker has gone: so do the idle shims (they read its end)
            idle -= len(os.read(taken_r, IDLE))


# -- a shim --------------------------------------------------------------------------------------


class _Shim:
    """One shim, forked ahead by the launcher: it waits for a message of requests (and takes
    those waiting after it, up to BATCH), carries them out and supervises the processes it
    started. It tells the launcher (which then forks the next) once it has answered its first
    request, so that fork does not take the CPU from this launch."""

    def __init__(self, taken: int) -> None:
        os.setsid()  # outlives the launcher and its session
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the launcher ignores it; we wait
        gc.disable()  # nothing to collect here, and a collection writes to pages it shares
        self.taken = taken
        self.pid = os.getpid()
        self.ticks = start_ticks(self.pid) or 0
        # pid: (the directory, holding its lock; the journal; the intent)
        self.running: dict[int, tuple[int, int, dict[str, Any]]] = {}
        self._rehearse()

    def _rehearse(self) -> None:
        """Go through a launch's Python work once while idle, to no effect. A fresh fork
        shares its pages with the launcher, and the first write to each costs a copy: paying
        for those now takes most of a millisecond off the launch to come."""
        request = json.loads(_json({"launch": "", "dir": "", "argv": ["x"], "env": {"A": "b"}}))
        intent = json.loads(_json({"launch": "", "attempt": 0, "task": {"ID": "", "Env": []}}))
        record = {**intent, **request, "pid": 0, "start_ticks": start_ticks(self.pid) or 0}
        _json(record | {key: record.get(key) for key in _REPLIED})
        describe_exit(0)

    def run(self) -> None:
        """Carry out the requests, then supervise their processes to the last one's end."""
        requests = socket.socket(fileno=0)
        flags = 0  # the first message is waited for; the others are taken only if waiting
        taken = 0
        while taken < BATCH:
            try:
                message = requests.recv(MAX_REQUEST, flags)
            except OSError:
                break  # none waiting
            if not message:
                break  # the worker has gone
            flags = socket.MSG_DONTWAIT
            try:
                batch = json.loads(message)
            except ValueError as exc:
                self._reply({"launch": "", "error": f"orc's shim: {exc!r}"})
                continue
            for request in batch if isinstance(batch, list) else [batch]:
                taken += 1
                try:
                    self._carry_out(request)
                except Exception as exc:  # a request it cannot read, a directory gone: say so
                    launch = request.get("launch", "") if isinstance(request, dict) else ""
                    self._reply({"launch": launch, "error": f"orc's shim: {exc!r}"})
        requests.detach()
        self._taken()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # done with the worker's socket: it may go away now
        os.close(devnull)
        self._supervise()

    def _reply(self, reply: dict[str, Any]) -> None:
        """One message to the worker (a worker that has gone no longer listens); then the
        launcher may fork the next shim."""
        with contextlib.suppress(OSError):
            os.write(0, _json(reply))
        self._taken()

    def _taken(self) -> None:
        """Tell the launcher, once, that this shim is idle no more."""
        if self.taken >= 0:
            with contextlib.suppress(OSError):
                os.write(self.taken, b".")
                os.close(self.taken)
            self.taken = -1

    def _carry_out(self, request: dict[str, Any]) -> None:
        """Start the request's process if its launch is still wanted, holding the directory's
        lock from before it looks at the intent until the process's end is recorded."""
        launch_id = request["launch"]
        dirfd = os.open(request["dir"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(dirfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dirfd)
            self._reply({"launch": launch_id, "resolve": "busy"})
            return
        journal = -1
        try:
            journal = os.open(LAUNCH, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, dir_fd=dirfd)
            chunks = []
            while chunk := os.read(journal, 65536):
                chunks.append(chunk)
            first, _, rest = b"".join(chunks).partition(b"\n")
            intent = json.loads(first)
            stale = intent.get("launch") != launch_id or bool(rest.strip())
        except BaseException:
            # this shim supervises other processes and lives on: let go of this directory now
            if journal >= 0:
                os.close(journal)
            os.close(dirfd)
            raise
        if stale:
            os.close(journal)
            os.close(dirfd)  # lets go of the lock
            self._reply({"launch": launch_id, "resolve": "stale"})
            return
        self._start(request, intent, dirfd, journal)

    def _start(
        self, request: dict[str, Any], intent: dict[str, Any], dirfd: int, journal: int
    ) -> None:
        """Start the task's process, record it and answer; or record and answer why not (and
        let go of the directory at once: this shim may live on for other processes)."""
        argv: list[str] = []
        files: list[int] = []
        try:
            argv = list(request["argv"])
            os.write(journal, SPAWNING + b"\n")
            files.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            for name in OUTPUT:
                files.append(os.open(name, _APPEND, 0o644, dir_fd=dirfd))
            os.fchdir(dirfd)  # the process starts in its working directory
            pid = spawn(argv, request["env"], *files)
        except Exception as exc:
            error = launch_error(argv[0] if argv else "", exc)
            try:
                _record_exit(journal, intent, None, error)
            finally:
                os.close(journal)
                os.close(dirfd)
            self._reply({"launch": request.get("launch", ""), "error": error})
            return
        finally:
            for fd in files:
                os.close(fd)
        self.running[pid] = (dirfd, journal, intent)
        record = {
            **intent,
            "pid": pid,
            "start_ticks": start_ticks(pid, zombie=True) or 0,
            "shim_pid": self.pid,
            "shim_ticks": self.ticks,
        }
        try:
            os.write(journal, b"\n" + RUN_LINE + _json(record) + b"}\n")
        except OSError as exc:  # the worker still learns the pid from the reply
            _log(f"cannot record the run of {request['launch']}: {exc}")
        self._reply({key: record[key] for key in _REPLIED} | {"launch": request["launch"]})

    def _supervise(self) -> None:
        """Wait for each process started; record how it ended, then let go of its directory."""
        while self.running:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return  # none left (cannot happen while `running` holds one)
            found = self.running.pop(pid, None)
            if found is None:
                continue
            dirfd, journal, intent = found
            code, error = describe_exit(os.waitstatus_to_exitcode(status))
            _record_exit(journal, intent, code, error)
            os.close(journal)
            os.close(dirfd)  # lets go of the lock


def _record_exit(journal: int, intent: dict[str, Any], code: int | None, error: str) -> None:
    """How the launch ended, for the worker now or after a restart (a disk that refuses it
    leaves the exit status unknown, and the worker says so)."""
    record = {"code": code, "error": error, "launch": intent.get("launch", "")}
    record["attempt"] = intent.get("attempt", 0)
    try:
        os.write(journal, b"\n" + EXIT_LINE + _json(record) + b"}\n")
    except OSError as exc:
        _log(f"cannot record the end of {record['launch']}: {exc}")


if __name__ == "__main__":
    serve()
