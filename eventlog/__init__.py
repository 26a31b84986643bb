"""A durable, append-only event log: segment files of checksummed, group-committed frames.

Generic: it knows msgspec types, not orc's events.
"""

from eventlog.errors import CorruptLogError, LogLockedError, LogWriteError, Recovery
from eventlog.log import EventLog
from eventlog.reader import LogReader, open_readonly, read_log

__all__ = [
    "CorruptLogError",
    "EventLog",
    "LogLockedError",
    "LogReader",
    "LogWriteError",
    "Recovery",
    "open_readonly",
    "read_log",
]
