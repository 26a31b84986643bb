"""The errors and the recovery report of the event log."""

from __future__ import annotations

import msgspec


class CorruptLogError(Exception):
    """Damage before the tail of the log: acknowledged records may be lost, so refuse to open."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = path
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"corrupt event log: {self.path} at offset {self.offset}: {self.reason}; the log "
            "cannot be opened safely (move the file away or restore it from a backup)"
        )


class LogWriteError(Exception):
    """An append failed; none of the records of the failed batch are in the log."""


class LogLockedError(LogWriteError):
    """Another EventLog (in this or another process) has the directory open."""


class Recovery(msgspec.Struct, frozen=True):
    """A torn tail cut off at open: the bytes from `offset` on, in `path`, were dropped.

    `dropped_bytes` counts them up to the last one that is not zero: zeros after it are space
    the writer had reserved (in a segment of today's format), as far as anyone can tell.
    """

    path: str
    offset: int
    dropped_bytes: int
