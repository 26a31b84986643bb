"""Reading a whole orc event log without touching it: for `orc replay` and for the manager's
`GET /tasks/{id}/history`, both of which may read a log a running manager is writing."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import msgspec

from eventlog import CorruptLogError, LogReader, open_readonly
from eventlog.snapshots import read_snapshot, snapshot_seqs
from orc.core.events import AnyEvent
from orc.core.snapshot import decode_state
from orc.core.state import ClusterState
from orc.core.upcast import NEWER, upcaster
from orc.progress import Progress, in_chunks
from orc.replay import story as replay


class BadInput(Exception):
    """One line for the user: what is wrong with the log or the question (`orc replay` exits
    with status 2)."""


class Log(NamedTuple):
    reader: LogReader
    records: list[replay.Record]
    base: ClusterState | None  # the state before `records`, from a snapshot
    base_seq: int  # the snapshot's seq; 0 when the records start at the beginning


def read(log_dir: Path, show_progress: bool = False) -> Log:
    """Every whole record of the log, read-only (blocking), of any version orc ever wrote
    (`orc.core.upcast`). With `show_progress`, a long read says how far it got on stderr.

    When compaction removed the first segments, the story starts from the earliest snapshot
    that covers them (the most history that can still be told).
    """
    try:
        reader = open_readonly(log_dir, AnyEvent, older=upcaster(AnyEvent))
        if not reader.segments:
            raise BadInput(f"no event log in {log_dir}")
        if reader.first_seq == 1:
            base_seq, base = 0, None
        else:
            base_seq, found = _snapshot_from(log_dir, reader.first_seq - 1, reader.last_seq)
            base = found
        records: list[tuple[int, AnyEvent]] = []
        total = reader.last_seq - base_seq
        with Progress("reading the event log", total, delay=1.0 if show_progress else 1e9) as p:
            for chunk in in_chunks(reader.read(base_seq + 1), p):
                records.extend(chunk)
        return Log(reader, records, base, base_seq)
    except CorruptLogError as exc:
        reason = " ".join(exc.reason.split())
        if "undecodable" in reason and NEWER not in reason:
            reason = f"not orc events: {reason}"
        raise BadInput(f"{exc.path} at offset {exc.offset}: {reason}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {exc.filename or log_dir}: {exc.strerror}") from None


def _snapshot_from(log_dir: Path, at_least: int, at_most: int) -> tuple[int, ClusterState]:
    """The earliest intact snapshot in [at_least, at_most], decoded."""
    for seq in sorted(snapshot_seqs(str(log_dir))):
        if at_least <= seq <= at_most and (blob := read_snapshot(str(log_dir), seq)):
            try:
                return seq, decode_state(blob)
            except msgspec.DecodeError:
                continue
    raise BadInput(
        f"{log_dir}: the log starts at seq {at_least + 1} (older events were compacted away)"
        " and no intact snapshot covers them"
    )
