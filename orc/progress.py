"""How far a long job got (reading a large log, recovering state at start-up), for a person.

On a terminal: a Rich progress bar on stderr. Otherwise (a log file, a service manager's
journal, a pipe): one log line every few seconds, so the output stays small and greppable.
A job that ends before the first report says nothing at all.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

T = TypeVar("T")
log = logging.getLogger("orc")

CHUNK = 65_536  # items between two looks at the clock: nothing per item on the hot path


class Progress:
    """`advance_to(done)` as the job goes; `close()` at the end (or use it as a context)."""

    def __init__(
        self,
        what: str,
        total: int,
        *,
        stream: TextIO | None = None,
        every: float = 5.0,
        delay: float = 1.0,
    ) -> None:
        self.what, self.total, self.every = what, max(total, 1), every
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.delay = delay  # a job shorter than this shows nothing
        self.last_line = self.started
        self.bar: Bar | None = None
        self.done = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance_to(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.started < self.delay:
            return
        if self.stream.isatty():
            if self.bar is None:
                self.bar = Bar(
                    TextColumn(self.what),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=Console(file=self.stream),
                    transient=True,
                )
                self.task = self.bar.add_task(self.what, total=self.total)
                self.bar.start()
            self.bar.update(self.task, completed=done)
        elif now - self.last_line >= self.every:
            self.last_line = now
            log.info(
                "%s: %d of %d (%d%%), %.0f s so far",
                self.what,
                done,
                self.total,
                100 * done // self.total,
                now - self.started,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def in_chunks(items: Iterable[T], progress: Progress, size: int = CHUNK) -> Iterator[list[T]]:
    """`items` in lists of `size`, reporting after each: the caller folds whole chunks, so a
    million-item loop pays for progress once per chunk, not once per item."""
    it = iter(items)
    done = 0
    while chunk := list(islice(it, size)):
        yield chunk
        done += len(chunk)
        progress.advance_to(done)
