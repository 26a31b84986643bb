"""Time as the wire wants it: RFC 3339 strings.

`now` is the one place orc reads the wall clock, and only the shell calls it: the pure core gets
its times inside messages and events, and does its arithmetic on them with the rest of this
module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def now() -> str:
    return datetime.now(UTC).isoformat()


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
