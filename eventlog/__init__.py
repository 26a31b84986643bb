"""A durable, append-only event log: segment files of checksummed, group-committed frames.

Generic: it knows msgspec types, not orc's events.
"""

from eventlog.errors import CorruptLogError, LogLockedError, LogWriteError, Recovery
from eventlog.log import EventLog

__all__ = ["CorruptLogError", "EventLog", "LogLockedError", "LogWriteError", "Recovery"]
