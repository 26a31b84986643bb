"""Arithmetic on RFC 3339 times, the only form time takes in orc's messages and events.

Pure: the core never reads a clock (orc/clock.py does, in the shell); it computes with the times
that arrive inside messages and events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def parse(at: str) -> datetime:
    """An RFC 3339 time as an aware datetime (a naive one is taken as UTC); ValueError if it
    is not one."""
    moment = datetime.fromisoformat(at)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def later(at: str, seconds: float) -> str:
    return (parse(at) + timedelta(seconds=seconds)).isoformat()


def seconds_between(start: str | None, end: str) -> float | None:
    """`end - start` in seconds, None when there is no start."""
    if not start:
        return None
    return (parse(end) - parse(start)).total_seconds()
