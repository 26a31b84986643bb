"""The wall clock, as the wire wants it: an RFC 3339 string.

`now` is the one place orc reads the wall clock, and only the shell calls it: the pure core gets
its times inside messages and events, and does its arithmetic on them with `orc.core.times`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return datetime.now(UTC).isoformat()
