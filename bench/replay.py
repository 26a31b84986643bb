"""Replay of an orc log: how fast the manager's `apply` folds a long log, beside SQLite and
beside msgspec's bare decode of the same records, and start-up time.

    .venv/bin/python bench/replay.py [--json] [--tasks N] [--repeat N]

The log holds a realistic mix of orc's own events: for each of N tasks (default 250,000) a
submission, a placement, a start and an exit (4N events, 1,000,000 by default), after a few
nodes joined, written with `append_batch` by `orc.shell.recovery.open_log`, as the manager
writes. Measured in one run, each keeping its best of --repeat runs:

- replay_per_s: read (read-only), decode and `orc.core.state.apply` every event, as `orc replay`
  and the manager do (`open_readonly` with the upcaster, `orc.core.state.replay`).
- sqlite_replay_per_s: the reference. The same records (each row holds the very bytes of one
  log record) in SQLite (WAL mode, synchronous=FULL, as bench/eventlog.py), read in order,
  each decoded by msgspec and folded by the same `orc.core.state.replay`.
- decode_floor_per_s: msgspec's bare decode of the same records: every frame's payload, read
  into memory beforehand, decoded as `list[AnyEvent]` and dropped. No file, no checksum, no
  `apply`: what decoding alone costs, which no replay of these bytes can beat.
- read_decode_per_s: orc's reader without `apply` (files, checksums, decoding).
- apply_only_per_s: `replay` over the events decoded beforehand: what `apply` alone costs.
- old_log_replay_per_s: the first tenth of the events as orc wrote them before event versions
  (map records), replayed through the upcaster: what an old log pays.
- startup_1m_full_s: the manager's state load, `EventLog.open` (checks every segment) plus
  `orc.shell.recovery.load_state`.
- startup_1m_snapshot_s: the same from a snapshot written 10,000 events before the end, as
  the manager starts (`orc.shell.recovery.recover`: newest snapshot, then the events after it).

Every measurement that builds a state pauses the garbage collector meanwhile, as orc's replay
does (`orc.core.state.collector_paused`).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

import msgspec  # noqa: E402
import trio  # noqa: E402

from eventlog import EventLog, open_readonly  # noqa: E402
from eventlog.segments import read_frames  # noqa: E402
from orc.core.events import (  # noqa: E402
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
    WireEvent,
    to_wire,
)
from orc.core.model import NodeInfo, Task  # noqa: E402
from orc.core.snapshot import encode_state  # noqa: E402
from orc.core.state import ClusterState, collector_paused, replay  # noqa: E402
from orc.core.upcast import upcaster  # noqa: E402
from orc.shell.recovery import load_state, open_log, recover  # noqa: E402

NODES = 8
BATCH = 10_000
SNAPSHOT_TAIL = 10_000  # events after the snapshot, replayed at start-up
GOAL_REPLAY_PER_S = 1_000_000
GOAL_VS_SQLITE = 3.0
GOAL_VS_DECODE_FLOOR = 0.9
GOAL_STARTUP_SNAPSHOT_S = 1.0
OLD_LOG_SHARE = 10  # the old-format log holds a tenth of the events


def at(ms: int) -> str:
    """A time like orc's clock writes: RFC 3339, microseconds, UTC offset."""
    seconds, millis = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-11-28T{hours % 24:02d}:{minutes:02d}:{sec:02d}.{millis:03d}000+00:00"


def make_events(tasks: int) -> list[AnyEvent]:
    """Nodes joining, then submit/schedule/start/exit per task, interleaved as a busy cluster
    logs them (a few hundred tasks in flight at once); one in ten exits fails."""
    rng = random.Random(5)
    nodes = [f"worker-{i}" for i in range(NODES)]
    events: list[AnyEvent] = [
        NodeJoined(
            at=at(0),
            node=NodeInfo(
                name=name,
                address=f"10.0.0.{i}:8888",
                drivers=("process", "docker"),
                cores=16,
                memory=64 << 30,
                disk=1 << 40,
            ),
        )
        for i, name in enumerate(nodes)
    ]
    window = 256
    pending: list[list[AnyEvent]] = []
    for i in range(tasks):
        task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        node = nodes[i % NODES]
        t0 = 1000 + i
        task = Task(
            id=task_id,
            name=f"job-{i}",
            cmd=["sh", "-c", f"echo {i}; sleep 1"],
            env=["MODE=batch", f"INDEX={i}"],
            driver="process",
            cpu=0.25,
            memory=64 << 20,
            restart_policy="on-failure",
            created_at=at(t0),
            updated_at=at(t0),
        )
        failed = i % 10 == 9
        pending.append(
            [
                TaskSubmitted(at=at(t0), task=task),
                TaskScheduled(at=at(t0 + 1), task_id=task_id, node=node),
                TaskStarted(at=at(t0 + 5), task_id=task_id, node=node, container_id=f"pid-{i}"),
                TaskExited(
                    at=at(t0 + 900),
                    task_id=task_id,
                    node=node,
                    exit_code=1 if failed else 0,
                    error="exit status 1" if failed else "",
                ),
            ]
        )
        if len(pending) == window:
            events.extend(_interleave(pending))
            pending = []
    events.extend(_interleave(pending))
    return events


def _interleave(group: list[list[AnyEvent]]) -> list[AnyEvent]:
    """Every task's first event, then every task's second, ...: each task's order is kept."""
    return [lives[k] for k in range(4) for lives in group]


async def write(directory: Path, events: list[AnyEvent]) -> None:
    async with await open_log(directory) as log:
        for i in range(0, len(events), BATCH):
            await log.append_batch(events[i : i + BATCH])


async def write_old(directory: Path, events: list[AnyEvent]) -> None:
    """The events as orc wrote them before event versions: maps with `Type` (the wire twins
    encode exactly those records)."""
    async with await EventLog.open(directory, WireEvent) as log:
        for i in range(0, len(events), BATCH):
            await log.append_batch([to_wire(e) for e in events[i : i + BATCH]])


def replay_all(directory: Path) -> ClusterState:
    return replay(open_readonly(directory, AnyEvent, older=upcaster(AnyEvent)).records())


def read_only(directory: Path) -> int:
    n = 0
    for _ in open_readonly(directory, AnyEvent, older=upcaster(AnyEvent)).records():
        n += 1
    return n


def payloads(directory: Path) -> list[bytes]:
    """Every frame's payload (its records, as one msgpack array), read into memory."""
    reader = open_readonly(directory, AnyEvent)
    return [payload for s in reader.segments for *_, payload in read_frames(s, 1)]


def decode_floor(frames: list[bytes]) -> int:
    """msgspec alone: decode every frame's records, drop them at once."""
    decode = msgspec.msgpack.Decoder(list[AnyEvent]).decode
    n = 0
    with collector_paused():
        for payload in frames:
            n += len(decode(payload))
    return n


def decoded(directory: Path) -> list[AnyEvent]:
    return list(open_readonly(directory, AnyEvent).records())


def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return db


def sqlite_write(path: Path, events: list[AnyEvent]) -> None:
    """One row per event, holding the same bytes as its record in orc's log."""
    encode = msgspec.msgpack.Encoder().encode
    db = sqlite_connect(path)
    for i in range(0, len(events), BATCH):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (data) VALUES (?)", [(encode(e),) for e in events[i : i + BATCH]]
        )
        db.execute("COMMIT")
    db.close()


def sqlite_replay(path: Path) -> ClusterState:
    decode = msgspec.msgpack.Decoder(AnyEvent).decode
    db = sqlite_connect(path)
    try:
        rows = db.execute("SELECT data FROM events ORDER BY seq")
        return replay(decode(data) for (data,) in rows)
    finally:
        db.close()


def startup_full(directory: Path) -> ClusterState:
    async def load() -> ClusterState:
        log = await open_log(directory)
        try:
            return await trio.to_thread.run_sync(load_state, log)
        finally:
            await log.aclose()

    return trio.run(load)


def add_snapshot(directory: Path, tail: int) -> int:
    """A snapshot `tail` events before the end, as the manager would have written it."""

    async def write_snapshot() -> int:
        async with await open_log(directory) as log:
            seq = log.last_seq - tail
            state = replay(e for s, e in log.read(1) if s <= seq)
            await log.save_snapshot(seq, encode_state(state))
            return seq

    return trio.run(write_snapshot)


def startup_from_snapshot(directory: Path) -> ClusterState:
    async def load() -> ClusterState:
        async with await open_log(directory) as log:
            state, _ = await recover(log)
            return state

    return trio.run(load)


def best(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of `repeat` runs, and the last run's result (freed outside the timing: a
    manager keeps its state, and freeing a million objects is no part of loading them)."""
    times, result = [], None
    for _ in range(repeat):
        result = None
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
        result = out
    return min(times), result


def measure(work: Path, tasks: int, repeat: int) -> dict[str, Any]:
    events = make_events(tasks)
    directory, old_directory, db = work / "log", work / "old-log", work / "events.db"
    trio.run(write, directory, events)
    trio.run(write_old, old_directory, events[: len(events) // OLD_LOG_SHARE])
    sqlite_write(db, events)
    n, n_old = len(events), len(events) // OLD_LOG_SHARE
    old_tasks = len(replay(events[:n_old]).tasks)
    log_bytes = sum(p.stat().st_size for p in directory.glob("*.seg"))
    old_bytes = sum(p.stat().st_size for p in old_directory.glob("*.seg"))
    del events

    # orc's own measurements first, in the order they always ran (each run's heap is left by
    # the ones before it), then the references and the breakdown
    replay_s, replayed = best(repeat, lambda: replay_all(directory))
    replayed_tasks = len(replayed.tasks)
    del replayed
    read_s, _ = best(repeat, lambda: read_only(directory))
    startup_s, state = best(repeat, lambda: startup_full(directory))
    assert replayed_tasks == tasks and len(state.tasks) == tasks
    snapshot_seq = add_snapshot(directory, SNAPSHOT_TAIL)
    snap_s, snap_state = best(repeat, lambda: startup_from_snapshot(directory))
    assert snap_state == state
    del snap_state
    sqlite_s, sqlite_state = best(repeat, lambda: sqlite_replay(db))
    assert sqlite_state == state, "SQLite's replay must rebuild the same state"
    del sqlite_state, state
    frames = payloads(directory)
    floor_s, floor_n = best(repeat, lambda: decode_floor(frames))
    assert floor_n == n
    frames.clear()
    ready = decoded(directory)
    apply_s, _ = best(repeat, lambda: replay(ready))
    ready.clear()
    old_s, old_state = best(repeat, lambda: replay_all(old_directory))
    assert len(old_state.tasks) == old_tasks
    del old_state
    r: dict[str, Any] = {
        "events": n,
        "log_mib": round(log_bytes / 2**20, 1),
        "old_format_log_mib": round(old_bytes / n_old / 2**20 * n, 1),  # the same events
        "replay_per_s": round(n / replay_s),
        "read_decode_per_s": round(n / read_s),
        "sqlite_replay_per_s": round(n / sqlite_s),
        "decode_floor_per_s": round(n / floor_s),
        "apply_only_per_s": round(n / apply_s),
        "old_log_replay_per_s": round(n_old / old_s),
        "startup_1m_full_s": round(startup_s, 3),
        "startup_1m_snapshot_s": round(snap_s, 3),
        "snapshot_seq": snapshot_seq,
    }
    r["replay_vs_sqlite"] = round(r["replay_per_s"] / r["sqlite_replay_per_s"], 2)
    r["replay_vs_decode_floor"] = round(r["replay_per_s"] / r["decode_floor_per_s"], 2)
    return r


def table(r: dict[str, Any]) -> str:
    def rate(key: str) -> str:
        return f"{r[key]:,}"

    def per_event(key: str) -> str:
        return f"{1e6 / r[key]:.2f} us"

    rows = [
        ("orc replay: read, decode, apply", rate("replay_per_s"), per_event("replay_per_s"),
         f"{r['replay_per_s'] / GOAL_REPLAY_PER_S:.2f}x the goal of {GOAL_REPLAY_PER_S:,}/s"),
        ("SQLite: same records, same apply", rate("sqlite_replay_per_s"),
         per_event("sqlite_replay_per_s"),
         f"orc {r['replay_vs_sqlite']:.2f}x SQLite (goal >= {GOAL_VS_SQLITE:g}x)"),
        ("decode floor: msgspec alone", rate("decode_floor_per_s"),
         per_event("decode_floor_per_s"),
         f"orc {r['replay_vs_decode_floor']:.2f}x the floor (goal >= {GOAL_VS_DECODE_FLOOR}x)"),
        ("  orc's reader, no apply", rate("read_decode_per_s"), per_event("read_decode_per_s"),
         ""),
        ("  apply alone, events decoded before", rate("apply_only_per_s"),
         per_event("apply_only_per_s"), ""),
        ("  an old log (map records, upcast)", rate("old_log_replay_per_s"),
         per_event("old_log_replay_per_s"), ""),
    ]  # fmt: skip
    width = max(len(name) for name, *_ in rows)
    lines = [
        f"{r['events']:,} orc events, {r['log_mib']} MiB of log"
        f" ({r['old_format_log_mib']} MiB as the old map records)",
        f"{'events/s':{width}}  {'rate':>10}  {'per event':>9}",
    ]
    for name, value, cost, note in rows:
        lines.append(f"{name:{width}}  {value:>10}  {cost:>9}  {note}".rstrip())
    lines += [
        f"start-up, full replay: {r['startup_1m_full_s']:.2f} s;"
        f" from a snapshot: {r['startup_1m_snapshot_s']:.2f} s"
        f" (goal <= {GOAL_STARTUP_SNAPSHOT_S:g} s; the snapshot stands for seq"
        f" 1..{r['snapshot_seq']:,}, start-up replays the {SNAPSHOT_TAIL:,} events after it)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--tasks", type=int, default=250_000, help="tasks (4 events each)")
    parser.add_argument("--repeat", type=int, default=3, help="keep the best of N runs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orc-bench-replay-"))
    try:
        results = measure(work, args.tasks, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
