"""What every driver shares: how a workload ended, and why it could not start."""

from __future__ import annotations

import msgspec


class Exit(msgspec.Struct, frozen=True):
    """How a workload ended. `code` is None when nobody can know it."""

    code: int | None
    error: str


class DriverUnavailable(Exception):
    """The driver cannot tell now (its engine does not answer): ask again later, and never
    take "cannot tell" for "gone"."""


class LaunchError(Exception):
    """The workload could not be started; the message is the task's `Error`."""
