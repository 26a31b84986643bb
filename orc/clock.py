"""Wall-clock time as the wire wants it.

Only the shell calls this; the pure core gets its times inside messages.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return datetime.now(UTC).isoformat()
