"""A log's own writer thread: its blocking writes run off the event loop, one at a time.

`trio.to_thread.run_sync` costs 80-170 µs a call on a small VM, for a call that does nothing:
a cached thread is handed the work, and its result comes back through trio's wakeup socket and
a reschedule. Here one long-lived thread waits on a queue, and signals each finished job
through an eventfd that the waiting task watches with `trio.lowlevel.wait_readable`: about
10 µs, a cost an fdatasync of 150 µs would otherwise pay on every flush.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import trio

T = TypeVar("T")


class _Signal:
    """A file descriptor made readable by `set` from another thread (an eventfd; a pipe where
    there is none)."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self.fd = self._write_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:  # pragma: no cover - not Linux
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)

    def set(self) -> None:
        if self._write_fd == self.fd:
            os.eventfd_write(self.fd, 1)
        else:  # pragma: no cover - not Linux
            os.write(self._write_fd, b"\x01")

    def clear(self) -> None:
        """Consume the signal; BlockingIOError when it is not set."""
        if self._write_fd == self.fd:
            os.eventfd_read(self.fd)
        else:  # pragma: no cover - not Linux
            os.read(self.fd, 64)

    def close(self) -> None:
        os.close(self.fd)
        if self._write_fd != self.fd:  # pragma: no cover - not Linux
            os.close(self._write_fd)


class _Job(Generic[T]):
    __slots__ = ("args", "error", "fn", "result")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.fn: Callable[..., T] | None = fn
        self.args = args
        self.result: T | None = None
        self.error: BaseException | None = None


def _serve(jobs: queue.SimpleQueue[_Job[Any] | None], signal: _Signal) -> None:
    """The thread: run each job, then signal; holds no reference to the log (so that a log
    never closed can still be collected, and its finalizer stop this thread)."""
    while True:
        job = jobs.get()
        if job is None:
            return
        assert job.fn is not None
        try:
            job.result = job.fn(*job.args)
        except BaseException as exc:  # handed to the awaiting task, which raises it
            job.error = exc
        job.fn = None
        job.args = ()
        job = None
        signal.set()


def _stop(jobs: queue.SimpleQueue[_Job[Any] | None], signal: _Signal) -> None:
    jobs.put(None)
    signal.close()


class WriterThread:
    """Runs blocking calls, one at a time, in a thread of its own."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._signal = _Signal()
        self._busy = False
        self._thread = threading.Thread(
            target=_serve, args=(self._jobs, self._signal), name=name, daemon=True
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop, self._jobs, self._signal)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the thread; its result, or its exception raised here.

        Like `trio.to_thread.run_sync`, a cancelled caller still waits for the call to end
        (the event loop's other tasks go on meanwhile; only a KeyboardInterrupt blocks it).
        """
        if self._busy or not self._finalizer.alive:
            raise RuntimeError("the writer thread is busy or closed")
        self._busy = True
        job: _Job[T] = _Job(fn, args)
        self._jobs.put(job)
        try:
            await self._wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._wait()
            raise
        except BaseException:  # KeyboardInterrupt: the loop may not run again, block instead
            self._wait_blocking()
            raise
        finally:
            self._busy = False
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    async def _wait(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._signal.fd)
            try:
                self._signal.clear()
            except BlockingIOError:
                continue
            return

    def _wait_blocking(self) -> None:
        while True:
            try:
                self._signal.clear()
            except BlockingIOError:
                select.select([self._signal.fd], [], [])
                continue
            return

    def close(self) -> None:
        """End the thread; call it when no `run` is in progress."""
        if self._busy:
            raise RuntimeError("the writer thread is busy")
        if self._finalizer.alive:
            trio.lowlevel.notify_closing(self._signal.fd)
            self._finalizer()
