"""Replay of an orc log: how fast the manager's `apply` folds a long log, and start-up time.

    .venv/bin/python bench/replay.py [--json] [--tasks N] [--repeat N]

The log holds a realistic mix of orc's own events: for each of N tasks (default 250,000) a
submission, a placement, a start and an exit (4N events, 1,000,000 by default), after a few
nodes joined, written with `append_batch`. Measured, each keeping its best of --repeat runs:

- replay_per_s: read (read-only), decode and `orc.core.state.apply` every event, as `orc replay`
  and the manager do; beside it, the read+decode rate alone, to show where the time goes.
- startup_1m_full_s: the manager's state load, `EventLog.open` (checks every segment) plus
  `orc.shell.recovery.load_state`.
- startup_1m_snapshot_s: the same from a snapshot written 10,000 events before the end, as
  the manager starts (`orc.shell.recovery.recover`: newest snapshot, then the events after it).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
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

import trio  # noqa: E402

from eventlog import EventLog, open_readonly  # noqa: E402
from orc.core.events import (  # noqa: E402
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.model import NodeInfo, Task  # noqa: E402
from orc.core.snapshot import encode_state  # noqa: E402
from orc.core.state import ClusterState, replay  # noqa: E402
from orc.shell.recovery import load_state, recover  # noqa: E402

NODES = 8
BATCH = 10_000
SNAPSHOT_TAIL = 10_000  # events after the snapshot, replayed at start-up
GOAL_REPLAY_PER_S = 1_000_000
GOAL_STARTUP_SNAPSHOT_S = 1.0


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
    async with await EventLog.open(directory, AnyEvent) as log:
        for i in range(0, len(events), BATCH):
            await log.append_batch(events[i : i + BATCH])


def replay_all(directory: Path) -> ClusterState:
    return replay(open_readonly(directory, AnyEvent).records())


def read_only(directory: Path) -> int:
    n = 0
    for _ in open_readonly(directory, AnyEvent).records():
        n += 1
    return n


def startup_full(directory: Path) -> ClusterState:
    async def load() -> ClusterState:
        log = await EventLog.open(directory, AnyEvent)
        try:
            return await trio.to_thread.run_sync(load_state, log)
        finally:
            await log.aclose()

    return trio.run(load)


def add_snapshot(directory: Path, tail: int) -> int:
    """A snapshot `tail` events before the end, as the manager would have written it."""

    async def write_snapshot() -> int:
        async with await EventLog.open(directory, AnyEvent) as log:
            seq = log.last_seq - tail
            state = replay(e for s, e in log.read(1) if s <= seq)
            await log.save_snapshot(seq, encode_state(state))
            return seq

    return trio.run(write_snapshot)


def startup_from_snapshot(directory: Path) -> ClusterState:
    async def load() -> ClusterState:
        async with await EventLog.open(directory, AnyEvent) as log:
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
    directory = work / "log"
    trio.run(write, directory, events)
    n = len(events)
    log_bytes = sum(p.stat().st_size for p in directory.glob("*.seg"))
    del events
    replay_s, replayed = best(repeat, lambda: replay_all(directory))
    replayed_tasks = len(replayed.tasks)
    del replayed
    read_s, _ = best(repeat, lambda: read_only(directory))
    startup_s, state = best(repeat, lambda: startup_full(directory))
    assert replayed_tasks == tasks and len(state.tasks) == tasks
    snapshot_seq = add_snapshot(directory, SNAPSHOT_TAIL)
    snap_s, snap_state = best(repeat, lambda: startup_from_snapshot(directory))
    assert snap_state == state
    return {
        "events": n,
        "log_mib": round(log_bytes / 2**20, 1),
        "replay_per_s": round(n / replay_s),
        "read_decode_per_s": round(n / read_s),
        "startup_1m_full_s": round(startup_s, 3),
        "startup_1m_snapshot_s": round(snap_s, 3),
        "snapshot_seq": snapshot_seq,
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("replay: read, decode, apply (events/s)", f"{r['replay_per_s']:,}",
         f">= {GOAL_REPLAY_PER_S:,}", r["replay_per_s"] / GOAL_REPLAY_PER_S),
        ("  of which read and decode alone (events/s)", f"{r['read_decode_per_s']:,}", "", None),
        ("start-up, full replay (s)", f"{r['startup_1m_full_s']:.2f}", "", None),
        ("start-up, from a snapshot (s)", f"{r['startup_1m_snapshot_s']:.2f}",
         f"<= {GOAL_STARTUP_SNAPSHOT_S:g}", None),
    ]  # fmt: skip
    width = max(len(name) for name, *_ in rows)
    lines = [
        f"{r['events']:,} orc events, {r['log_mib']} MiB of log",
        f"{'':{width}}  {'orc':>12}  {'goal':>12}  ratio to goal",
    ]
    for name, value, goal, ratio in rows:
        tail = f"{ratio:.2f}x" if ratio is not None else ""
        lines.append(f"{name:{width}}  {value:>12}  {goal:>12}  {tail}".rstrip())
    lines.append(
        f"(the snapshot stands for seq 1..{r['snapshot_seq']:,};"
        f" start-up replays the {SNAPSHOT_TAIL:,} events after it)"
    )
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
