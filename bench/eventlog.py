"""The event log against SQLite (WAL mode, synchronous=FULL) doing the same durable work.

    .venv/bin/python bench/eventlog.py [--json] [--events N] [--repeat N]

Every append is durable before it counts: the log fdatasyncs each flush, SQLite syncs each
commit. Replay is open + read + decode + a trivial apply (the latest record per task id); orc's
reads the records alone (`EventLog.records`), SQLite's its rows in order.
With --repeat, each measurement keeps its best run.

The records are shaped like orc's events and encoded as orc's are (`array_like` structs, see
orc/core/events.py); SQLite stores the same bytes, one row each. Batched appends are measured
with each of the log's checks (`EventLog.open(validate=...)`):

- append_batched_per_s: `validate="type"`, each record checked to be one of the record type's
  structs, the one thing msgspec's encoder does not guarantee (it encodes any struct, dict or
  list): the check for a caller whose records are built by type-checked code.
- append_batched_decode_checked_per_s: `validate=True` (the log's default, and orc's), each
  record decoded back, so a field of the wrong type is caught too: a second decode.
- append_batched_unvalidated_per_s: `validate=False`, nothing checked.

append_batched_batch_p50_us and sqlite_append_batched_batch_p50_us: the median time of one
batch of the type-checked runs (the lowest of the repeats), and append_batched_p50_ratio, the
ratio of the two: on a machine shared with other work, a median shrugs off the moments when
someone else had the CPU or the disk, which a total over the run does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # else `import eventlog` would import this file

import msgspec  # noqa: E402
import trio  # noqa: E402

from eventlog import EventLog  # noqa: E402

BATCH = 1000
TASKS = 64
SQLITE_SINGLE_COMMITS = 2000
IDS = [f"task-{i:06d}" for i in range(10_000)]


class Event(msgspec.Struct, tag=True, frozen=True, kw_only=True, array_like=True, gc=False):
    at: str
    task_id: str


class TaskScheduled(Event, frozen=True):
    node: str


class TaskStarted(Event, frozen=True):
    node: str
    container_id: str = ""


class TaskExited(Event, frozen=True):
    node: str
    exit_code: int | None = None
    error: str = ""


AnyEvent = TaskScheduled | TaskStarted | TaskExited


def make_events(n: int) -> list[AnyEvent]:
    """Events shaped like orc's: a timestamp, a task id, a node, a few small fields."""
    at = "2025-01-01T00:00:00.000000Z"
    events: list[AnyEvent] = []
    for i in range(n):
        task_id, kind = IDS[i % len(IDS)], i % 3
        if kind == 0:
            events.append(TaskScheduled(at=at, task_id=task_id, node="node-7"))
        elif kind == 1:
            events.append(TaskStarted(at=at, task_id=task_id, node="node-7", container_id="c0ffee"))
        else:
            events.append(TaskExited(at=at, task_id=task_id, node="node-7", exit_code=0))
    return events


def apply(state: dict[str, Any], event: AnyEvent) -> None:
    state[event.task_id] = event


# -- orc's event log ----------------------------------------------------------------------------


async def log_append_batched(
    directory: Path,
    events: list[AnyEvent],
    validate: bool | Literal["type"] = "type",
    batch_times: list[float] | None = None,
) -> float:
    log = await EventLog.open(directory, AnyEvent, validate=validate)
    times = [] if batch_times is None else batch_times
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        began = time.perf_counter()
        await log.append_batch(events[i : i + BATCH])
        times.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    await log.aclose()
    return len(events) / elapsed


async def log_append_concurrent(directory: Path, events: list[AnyEvent]) -> tuple[float, int]:
    """Rate of TASKS tasks each appending one event at a time, and the fdatasyncs it took."""
    log = await EventLog.open(directory, AnyEvent)
    per_task = len(events) // TASKS

    async def appender(part: list[AnyEvent]) -> None:
        for event in part:
            await log.append(event)

    syncs = log.fsync_count
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for t in range(TASKS):
            nursery.start_soon(appender, events[t * per_task : (t + 1) * per_task])
    elapsed = time.perf_counter() - start
    syncs = log.fsync_count - syncs
    await log.aclose()
    return per_task * TASKS / elapsed, syncs


async def log_replay(directory: Path, expected: int) -> float:
    start = time.perf_counter()
    log = await EventLog.open(directory, AnyEvent)
    state: dict[str, Any] = {}
    with collector_paused():
        for event in log.records():
            apply(state, event)
    elapsed = time.perf_counter() - start
    await log.aclose()
    assert log.last_seq == expected and len(state) == min(expected, len(IDS)), log.last_seq
    return expected / elapsed


# -- SQLite -------------------------------------------------------------------------------------


def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return db


def sqlite_append_batched(
    path: Path, events: list[AnyEvent], batch_times: list[float] | None = None
) -> float:
    db = sqlite_connect(path)
    encode = msgspec.msgpack.Encoder().encode
    times = [] if batch_times is None else batch_times
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        began = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (data) VALUES (?)", [(encode(e),) for e in events[i : i + BATCH]]
        )
        db.execute("COMMIT")
        times.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    db.close()
    return len(events) / elapsed


def sqlite_append_single(path: Path, events: list[AnyEvent]) -> float:
    """One commit per event: what each of the concurrent appenders asks for."""
    db = sqlite_connect(path)
    encode = msgspec.msgpack.Encoder().encode
    start = time.perf_counter()
    for event in events:
        db.execute("INSERT INTO events (data) VALUES (?)", (encode(event),))
    elapsed = time.perf_counter() - start
    db.close()
    return len(events) / elapsed


def sqlite_replay(path: Path, expected: int) -> float:
    decode = msgspec.msgpack.Decoder(AnyEvent).decode
    start = time.perf_counter()
    db = sqlite_connect(path)
    state: dict[str, Any] = {}
    with collector_paused():
        for _, data in db.execute("SELECT seq, data FROM events ORDER BY seq"):
            apply(state, decode(data))
    elapsed = time.perf_counter() - start
    (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    db.close()
    assert count == expected and len(state) == min(expected, len(IDS)), count
    return expected / elapsed


# -- running ------------------------------------------------------------------------------------


@contextmanager
def collector_paused() -> Iterator[None]:
    """Both replays build a state that all stays alive; as orc's own replay does, pause the
    garbage collector meanwhile, which would only walk it again and again."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def best(repeat: int, run: Callable[[int], float]) -> float:
    return max(run(i) for i in range(repeat))


def measure(work: Path, events: list[AnyEvent], repeat: int) -> dict[str, Any]:
    n = len(events)
    concurrent = events[: max(TASKS, n // 5)]
    syncs: list[int] = []
    medians: dict[str, list[float]] = {"orc": [], "sqlite": []}

    def concurrent_run(i: int) -> float:
        rate, count = trio.run(log_append_concurrent, work / f"concurrent-{i}", concurrent)
        syncs.append(count)
        return rate

    def batched_run(i: int) -> float:
        times: list[float] = []
        rate = trio.run(log_append_batched, work / f"log-{i}", events, "type", times)
        medians["orc"].append(statistics.median(times))
        return rate

    def sqlite_batched_run(i: int) -> float:
        times: list[float] = []
        rate = sqlite_append_batched(work / f"sqlite-{i}.db", events, times)
        medians["sqlite"].append(statistics.median(times))
        return rate

    r: dict[str, Any] = {
        "events": n,
        "append_batched_per_s": best(repeat, batched_run),
        "append_batched_decode_checked_per_s": best(
            repeat, lambda i: trio.run(log_append_batched, work / f"full-{i}", events, True)
        ),
        "append_batched_unvalidated_per_s": best(
            repeat, lambda i: trio.run(log_append_batched, work / f"raw-{i}", events, False)
        ),
        "append_concurrent_per_s": best(repeat, concurrent_run),
        "replay_per_s": best(repeat, lambda i: trio.run(log_replay, work / "log-0", n)),
        "sqlite_append_batched_per_s": best(repeat, sqlite_batched_run),
        "sqlite_append_single_per_s": best(
            repeat,
            lambda i: sqlite_append_single(work / f"single-{i}.db", events[:SQLITE_SINGLE_COMMITS]),
        ),
        "sqlite_replay_per_s": best(repeat, lambda i: sqlite_replay(work / "sqlite-0.db", n)),
    }
    r["concurrent_records_per_fsync"] = len(concurrent) // max(1, min(syncs))
    r["append_batched_ratio"] = r["append_batched_per_s"] / r["sqlite_append_batched_per_s"]
    r["append_batched_decode_checked_ratio"] = (
        r["append_batched_decode_checked_per_s"] / r["sqlite_append_batched_per_s"]
    )
    r["append_batched_unvalidated_ratio"] = (
        r["append_batched_unvalidated_per_s"] / r["sqlite_append_batched_per_s"]
    )
    r["append_concurrent_ratio"] = r["append_concurrent_per_s"] / r["sqlite_append_single_per_s"]
    r["append_batched_batch_p50_us"] = min(medians["orc"]) * 1e6
    r["sqlite_append_batched_batch_p50_us"] = min(medians["sqlite"]) * 1e6
    r["append_batched_p50_ratio"] = (
        r["sqlite_append_batched_batch_p50_us"] / r["append_batched_batch_p50_us"]
    )
    r["replay_ratio"] = r["replay_per_s"] / r["sqlite_replay_per_s"]
    return r


def table(r: dict[str, Any]) -> str:
    rows = [
        ("append, batches of 1,000 (type check)", "append_batched_per_s",
         "sqlite_append_batched_per_s", "append_batched_ratio"),
        ("  each record decoded back", "append_batched_decode_checked_per_s",
         "sqlite_append_batched_per_s", "append_batched_decode_checked_ratio"),
        ("  nothing checked", "append_batched_unvalidated_per_s",
         "sqlite_append_batched_per_s", "append_batched_unvalidated_ratio"),
        (f"append, {TASKS} concurrent single", "append_concurrent_per_s",
         "sqlite_append_single_per_s", "append_concurrent_ratio"),
        ("replay (open+read+decode+apply)", "replay_per_s", "sqlite_replay_per_s",
         "replay_ratio"),
    ]  # fmt: skip
    lines = [f"{'records/s':40} {'orc':>12} {'sqlite':>12} {'ratio':>7}"]
    for label, orc, sqlite, ratio in rows:
        lines.append(f"{label:40} {r[orc]:>12,.0f} {r[sqlite]:>12,.0f} {r[ratio]:>6.1f}x")
    lines.append(
        f"{'  one batch of 1,000, median µs':40} {r['append_batched_batch_p50_us']:>12,.0f}"
        f" {r['sqlite_append_batched_batch_p50_us']:>12,.0f}"
        f" {r['append_batched_p50_ratio']:>6.1f}x"
    )
    lines.append(
        f"({r['events']:,} events; SQLite in WAL mode with synchronous=FULL; its concurrent "
        f"column is one commit per row; orc wrote {r['concurrent_records_per_fsync']} records "
        "per fdatasync with concurrent appenders)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=1, help="keep the best of N runs")
    args = parser.parse_args()
    scratch = ROOT / ".bench-tmp"
    scratch.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="eventlog-", dir=scratch))
    try:
        results = measure(work, make_events(args.events), args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not any(scratch.iterdir()):
            scratch.rmdir()
    print(table(results))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
