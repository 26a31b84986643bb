"""Jobs: a 500-replica process job against spawning the same processes directly from Python,
and one reconcile pass of the pure core over a large job.

- `job_500_per_s`: `POST /jobs` of a service job of `--count` process tasks (`sleep 120`) on a
  single-process orc, until `GET /jobs/{id}` counts them all Running: tasks per second.
- `direct_spawn_per_s`: the same number of `subprocess.Popen` calls in a row, in this
  process: the reference (a job cannot launch processes faster than Python spawns them).
  The goal: `job_500_per_s` at least 0.5x of it.
- `reconcile_10k_ms`: one `orc.core.reconcile.reconcile` pass over a service job of 10,000
  Running, healthy tasks on 100 nodes (nothing to decide: the pass must find that out fast);
  the best of `--repeat` runs. The goal: under 100 ms. Beside it, `reconcile_10k_place_ms`:
  the pass that decides to place a new job of 10,000 tasks (10,000 decisions and events).

    .venv/bin/python bench/jobs.py [--count 500] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from orcproc import single_process_orc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "core"))

from jobstates import T0, Sim, big_state, node, spec  # noqa: E402  (test helpers)

from orc.core.reconcile import reconcile  # noqa: E402

CMD = ["sleep", "120"]


def direct(count: int) -> float:
    procs: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    for _ in range(count):
        procs.append(subprocess.Popen(CMD, stdin=subprocess.DEVNULL, start_new_session=True))
    rate = count / (time.perf_counter() - start)
    for p in procs:
        p.kill()
        p.wait()
    return rate


def through_job(count: int) -> float:
    job = {"ID": "bench", "Count": count, "Task": {"Cmd": CMD}}
    with (
        single_process_orc(ORC_DOCKER_HOST="unix:///nonexistent/docker.sock") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        start = time.perf_counter()
        r = client.post("/jobs", json=job)
        if r.status_code != 201:
            raise RuntimeError(f"POST /jobs answered {r.status_code}: {r.text}")
        while client.get("/jobs/bench").json()["Tasks"]["Running"] < count:
            time.sleep(0.05)
        rate = count / (time.perf_counter() - start)
        client.delete("/jobs/bench")
        return rate


def reconcile_ms(repeat: int) -> float:
    state, now = big_state(tasks=10_000, nodes=100)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = reconcile(state, now)
        best = min(best, (time.perf_counter() - t0) * 1000)
        if done.events:
            raise RuntimeError(f"a settled job should need no decision, got {done.events[:3]}")
    return best


def placing_ms(repeat: int) -> float:
    """One pass that places a new job of 10,000 tasks on 100 nodes (10,000 decisions)."""
    sim = Sim(check=False)
    sim.join(*(node(f"n{i:03d}", cores=100) for i in range(100)))
    sim.register(spec("big", count=10_000))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = reconcile(sim.state, T0)
        best = min(best, (time.perf_counter() - t0) * 1000)
    assert sum(1 for e in done.events if type(e).__name__ == "TaskSubmitted") == 10_000
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spawn = direct(args.count)
    job = through_job(args.count)
    spawn_after = direct(args.count)  # the machine may have changed meanwhile: both sides
    reference = (spawn + spawn_after) / 2
    rec = reconcile_ms(args.repeat)
    place = placing_ms(args.repeat)
    result = {
        "job_500_per_s": round(job, 1),
        "direct_spawn_per_s": round(reference, 1),
        "job_vs_direct": round(job / reference, 3),
        "reconcile_10k_ms": round(rec, 2),
        "reconcile_10k_place_ms": round(place, 2),
        "count": args.count,
    }
    print(f"{'job of ' + str(args.count) + ' process tasks':36}{job:>10.1f} tasks/s")
    print(f"{'Popen, the same processes':36}{reference:>10.1f} tasks/s")
    print(f"{'ratio (goal >= 0.5)':36}{job / reference:>10.3f}")
    print(f"{'reconcile, 10,000 tasks, 100 nodes':36}{rec:>10.2f} ms (goal < 100)")
    print(f"{'reconcile placing 10,000 new tasks':36}{place:>10.2f} ms")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
