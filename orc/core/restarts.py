"""Restart policies and backoff: pure arithmetic, no clock (times arrive as RFC 3339 strings).

- `no` (and the seed's empty string): never restart.
- `on-failure`: restart after a failure: a non-zero exit, a launch error, a lost task, or a task
  stopped because its health check failed.
- `always` and `unless-stopped`: restart after any end, a clean exit (0) included. A task a user
  stopped (DELETE) is never restarted, so the two behave alike in orc.

A *streak* counts restarts in a row: a run that lasted `reset_after` seconds ends the streak, so
the next restart is the first of a new one. Restart n of a streak waits `backoff * 2**(n-1)`
seconds, at most `backoff_max`; a streak is at most `max_restarts` long (0: no restarts at all).
`RestartCount` on the task counts every restart ever; only the manager sets it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from orc.core.model import Task

POLICIES = ("no", "on-failure", "always", "unless-stopped")
RESTARTS_AFTER_CLEAN_EXIT = frozenset({"always", "unless-stopped"})


class RestartSettings(msgspec.Struct, frozen=True):
    """`placement` is the scheduling policy used when a restart must move to another node."""

    max_restarts: int = 3
    backoff: float = 1.0
    backoff_max: float = 300.0
    reset_after: float = 600.0
    placement: str = "epvm"


DEFAULT = RestartSettings()


class RestartState(msgspec.Struct, frozen=True):
    """What the manager's state keeps per restarted task (in `ClusterState.restarts`).

    `streak`: restarts in a row so far. `not_before`: the end of the last backoff. `waiting`:
    the task is Scheduled and waits out that backoff; nothing runs it until `TaskRestarted`.
    """

    streak: int
    not_before: str
    waiting: bool = True


def policy_of(task: Task) -> str:
    """The task's policy, the seed's empty string read as `no`."""
    return task.restart_policy or "no"


def should_restart(policy: str, clean: bool) -> bool:
    """Whether `policy` restarts a task that ended, cleanly (exit 0) or not.

    Not asked for a task a user stopped: that one never restarts.
    """
    if policy in RESTARTS_AFTER_CLEAN_EXIT:
        return True
    if policy == "on-failure":
        return not clean
    return False


def backoff(streak: int, settings: RestartSettings = DEFAULT) -> float:
    """Seconds before restart number `streak` (1-based) of a streak: 1, 2, 4, ... capped."""
    if streak <= 1:
        return min(settings.backoff, settings.backoff_max)
    # 2**64 is past any cap worth having; the bound keeps the float finite.
    return min(settings.backoff * 2.0 ** min(streak - 1, 64), settings.backoff_max)


def streak_after(previous: int, ran_for: float | None, settings: RestartSettings = DEFAULT) -> int:
    """The streak number of the restart after a run of `ran_for` seconds (None: never ran)."""
    if ran_for is not None and ran_for >= settings.reset_after:
        return 1
    return previous + 1


class Plan(NamedTuple):
    """What to do after a task ended: restart or not, and if so which restart and when."""

    restart: bool
    streak: int = 0
    delay: float = 0.0
    why_not: str = ""


def plan(
    policy: str,
    clean: bool,
    previous_streak: int,
    ran_for: float | None,
    settings: RestartSettings = DEFAULT,
) -> Plan:
    if not should_restart(policy, clean):
        return Plan(False)
    streak = streak_after(previous_streak, ran_for, settings)
    if streak > settings.max_restarts:
        n = settings.max_restarts
        return Plan(
            False,
            why_not=f"not restarted: {n} restart{'s' * (n != 1)} in a row already"
            f" (at most {n}, policy {policy})",
        )
    return Plan(True, streak, backoff(streak, settings))


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}min"
    return f"{seconds / 3600:g}h"
