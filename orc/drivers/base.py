"""What every driver shares: how a workload ended, and why it could not start."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec


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


class DriverUnavailable(Exception):
    """The driver cannot tell now (its engine does not answer): ask again later, and never
    take "cannot tell" for "gone"."""


class LaunchError(Exception):
    """The workload could not be started; the message is the task's `Error`."""
