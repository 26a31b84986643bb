"""Reading a whole orc event log without touching it: for `orc replay` and for the manager's
`GET /tasks/{id}/history`, both of which may read a log a running manager is writing. The log
is a directory (`read`) or, for highly available managers, etcd (`read_etcd`): the same
records, the same story."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import msgspec
import trio

from eventlog import CorruptLogError, LogReader, open_readonly
from eventlog.errors import Recovery
from eventlog.snapshots import read_snapshot, snapshot_seqs
from orc.core.events import AnyEvent
from orc.core.snapshot import decode_state
from orc.core.state import ClusterState
from orc.core.upcast import NEWER, upcaster
from orc.ha.etcd import EtcdClient, EtcdError
from orc.ha.log import EtcdLog
from orc.progress import Progress, in_chunks
from orc.replay import story as replay


class BadInput(Exception):
    """One line for the user: what is wrong with the log or the question (`orc replay` exits
    with status 2)."""


class Source(Protocol):
    """Where the records came from, as `orc replay --json` says it."""

    @property
    def directory(self) -> str: ...

    @property
    def first_seq(self) -> int: ...

    @property
    def last_seq(self) -> int: ...

    @property
    def torn_tail(self) -> Recovery | None: ...


class EtcdSource(NamedTuple):
    """A log in etcd: `directory` names the endpoints and the cluster; it has no torn tail
    (a record is in etcd whole or not at all)."""

    directory: str
    first_seq: int
    last_seq: int
    torn_tail: Recovery | None = None


class Log(NamedTuple):
    reader: LogReader | Source
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
        total = reader.last_seq - base_seq
        records = _gather(reader.read(base_seq + 1), total, show_progress)
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


def _gather(
    items: Iterable[tuple[int, AnyEvent]], total: int, show_progress: bool
) -> list[replay.Record]:
    records: list[replay.Record] = []
    with Progress("reading the event log", total, delay=1.0 if show_progress else 1e9) as p:
        for chunk in in_chunks(items, p):
            records.extend(chunk)
    return records


def read_etcd(endpoints: Sequence[str], cluster: str, show_progress: bool = False) -> Log:
    """Every record of `cluster`'s log in etcd, read-only (blocking: it runs its own trio
    loop, so call it from a thread of a running one). When compaction removed the log's
    start, the story starts from the snapshot (etcd keeps the newest alone)."""
    where = f"etcd {','.join(endpoints)} (cluster {cluster})"
    try:
        return trio.run(_read_etcd, tuple(endpoints), cluster, where, show_progress)
    except CorruptLogError as exc:
        raise BadInput(str(exc)) from None
    except EtcdError as exc:
        raise BadInput(f"cannot read the log from {where}: {exc}") from None


async def _read_etcd(
    endpoints: tuple[str, ...], cluster: str, where: str, show_progress: bool
) -> Log:
    async with EtcdClient(endpoints) as client:
        log = await EtcdLog.open(client, cluster, fence=None)
        if log.last_seq == 0:
            raise BadInput(f"no event log in {where}")
        base_seq, base = 0, None
        if log.first_seq > 1:
            found = await log.load_snapshot()
            if found is None or found[0] < log.first_seq - 1:
                raise BadInput(
                    f"{where}: the log starts at seq {log.first_seq} (older events were compacted"
                    " away) and no snapshot covers them"
                )
            try:
                base_seq, base = found[0], decode_state(found[1])
            except msgspec.DecodeError as exc:
                raise BadInput(
                    f"{where}: the snapshot at seq {found[0]} is unreadable: {exc}"
                ) from None
        # blocking reads, on this loop of our own
        records = _gather(log.read(base_seq + 1), log.last_seq - base_seq, show_progress)
        if base_seq < log.last_seq and (not records or records[0][0] != base_seq + 1):
            raise BadInput(f"{where}: the log was compacted while it was read; try again")
        source = EtcdSource(where, max(log.first_seq, base_seq + 1), log.last_seq)
        return Log(source, records, base, base_seq)
