"""Placement throughput and latency: orc's incremental index against scoring every node.

    .venv/bin/python bench/scheduler.py [--tasks 100000] [--nodes 100,1000,10000] [--json]

Pure scheduler and state, no I/O. Simulated nodes of mixed sizes (16-64 GiB, 8-32 cores, some
without docker) take a stream of tasks of eight shapes. Tasks end as they go (the oldest ends
once a quarter of the cluster's memory is in use), so allocations rise and fall and ended
tasks free capacity as in a live cluster. For each policy and node count:

- `<policy>_<nodes>_per_s`: placements per second over the whole run (ends included);
- `<policy>_<nodes>_p99_ms` (and `_p50_ms`, `_max_ms`): the time of one `Placer.place` call;
- `<policy>_naive_<nodes>_per_s`: the reference, the book's way: the three pure steps
  scoring every node for every task (`orc.core.placement.choose`), on fewer tasks.

After each run the index's allocations are checked against allocations derived from the
placed-and-not-finished tasks, and every placement is checked to fit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

import msgspec  # noqa: E402

from orc.core.model import NodeInfo, State, Task  # noqa: E402
from orc.core.placement import (  # noqa: E402
    EMPTY,
    Allocation,
    Placer,
    allocations,
    choose,
    nano_cpus,
)

GiB, MiB = 1 << 30, 1 << 20
POLICIES = ("roundrobin", "epvm", "fit")
NAIVE_TASKS = {100: 5000, 1000: 1000, 10000: 200}
SHAPES = [
    ("process", 0.1, 64 * MiB),
    ("process", 0.25, 128 * MiB),
    ("process", 0.5, 256 * MiB),
    ("process", 1.0, 512 * MiB),
    ("docker", 0.1, 128 * MiB),
    ("docker", 0.5, 512 * MiB),
    ("docker", 1.0, 1 * GiB),
    ("docker", 2.0, 2 * GiB),
]


def make_nodes(count: int, rng: random.Random) -> list[NodeInfo]:
    return [
        NodeInfo(
            name=f"node-{i}",
            address=f"10.0.{i // 256}.{i % 256}:8888",
            drivers=("process",) if rng.random() < 0.1 else ("process", "docker"),
            cores=rng.choice((8, 16, 32)),
            memory=rng.choice((16, 32, 64)) * GiB,
            disk=500 * GiB,
        )
        for i in range(count)
    ]


def make_tasks(count: int, rng: random.Random) -> list[Task]:
    tasks = []
    for i in range(count):
        driver, cpu, memory = rng.choice(SHAPES)
        tasks.append(Task(id=f"t{i}", driver=driver, cpu=cpu, memory=memory, disk=GiB))
    return tasks


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6


def run_index(policy: str, nodes: list[NodeInfo], tasks: list[Task]) -> dict[str, float]:
    """orc's way: one Placer, tasks placed one by one, the oldest ending as memory fills."""
    budget = sum(n.memory for n in nodes) // 4
    placer = Placer(policy, nodes)
    live: deque[tuple[str, int]] = deque()
    in_use = unplaced = 0
    times: list[int] = []
    placed: dict[str, str] = {}
    clock = time.perf_counter_ns
    start = clock()
    for task in tasks:
        while in_use + task.memory > budget and live:
            done, memory = live.popleft()
            placer.release(done)
            in_use -= memory
            del placed[done]
        t0 = clock()
        choice = placer.place(task)
        times.append(clock() - t0)
        if choice.node:
            live.append((task.id, task.memory))
            in_use += task.memory
            placed[task.id] = choice.node
        else:
            unplaced += 1
    elapsed = (clock() - start) / 1e9
    _check(placer, nodes, tasks, placed)
    times.sort()
    return {
        "per_s": len(tasks) / elapsed,
        "p50_ms": _pct(times, 0.50),
        "p99_ms": _pct(times, 0.99),
        "max_ms": times[-1] / 1e6,
        "unplaced": unplaced,
    }


def _check(
    placer: Placer, nodes: list[NodeInfo], tasks: list[Task], placed: dict[str, str]
) -> None:
    """The index's allocations are the ones derived from placed-and-not-finished tasks."""
    by_id = {t.id: t for t in tasks}
    running = [
        msgspec.structs.replace(by_id[tid], node=node, state=State.RUNNING)
        for tid, node in placed.items()
    ]
    derived = allocations(running)
    assert placer.allocations() == derived, "index allocations differ from the derived ones"
    for node in nodes:
        a = derived.get(node.name)
        if a is not None:
            assert a.memory <= node.memory and a.cpu <= node.cores * 10**9, node.name


def run_naive(policy: str, nodes: list[NodeInfo], tasks: list[Task]) -> float:
    """The book's way: select, score and pick over every node for every task (no ends)."""
    alloc: dict[str, Allocation] = {}
    cursor = -1
    start = time.perf_counter()
    for task in tasks:
        choice = choose(policy, task, nodes, alloc, cursor)
        cursor = choice.cursor
        if choice.node:
            a = alloc.get(choice.node, EMPTY)
            alloc[choice.node] = Allocation(
                a.cpu + nano_cpus(task.cpu),
                a.memory + task.memory,
                a.disk + task.disk,
                a.tasks + 1,
            )
    return len(tasks) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--nodes", default="100,1000,10000")
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args()

    result: dict[str, float | int] = {"tasks": args.tasks}
    counts = [int(n) for n in args.nodes.split(",")]
    print(
        f"{args.tasks:,} tasks of {len(SHAPES)} shapes; the oldest ends once a quarter of the"
        " cluster's memory is in use"
    )
    print(
        f"{'policy':<11}{'nodes':>7}{'placed/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'naive/s':>10}{'ratio':>8}"
    )
    for count in counts:
        nodes = make_nodes(count, random.Random(count))
        tasks = make_tasks(args.tasks, random.Random(6))
        naive_tasks = tasks[: NAIVE_TASKS.get(count, 1000)]
        for policy in POLICIES:
            r = run_index(policy, nodes, tasks)
            naive = run_naive(policy, nodes, naive_tasks)
            key = f"{policy}_{count}"
            result[f"{key}_per_s"] = round(r["per_s"])
            result[f"{key}_p50_ms"] = round(r["p50_ms"], 4)
            result[f"{key}_p99_ms"] = round(r["p99_ms"], 4)
            result[f"{key}_max_ms"] = round(r["max_ms"], 3)
            result[f"{policy}_naive_{count}_per_s"] = round(naive)
            print(
                f"{policy:<11}{count:>7,}{r['per_s']:>12,.0f}{r['p50_ms']:>9.3f}"
                f"{r['p99_ms']:>9.3f}{r['max_ms']:>9.2f}{naive:>10,.0f}"
                f"{r['per_s'] / naive:>7.1f}x"
            )
    naive_sizes = ", ".join(f"{NAIVE_TASKS.get(c, 1000):,} at {c:,} nodes" for c in counts)
    print(f"naive: the first tasks only ({naive_sizes}), none ending")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
