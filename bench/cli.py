"""`orc ps` at 10,000 tasks: the time a person waits for the table, beside the API call it makes.

A single-process orc is filled with N tasks (default 10,000) that stay Pending (docker tasks
with no engine: nothing runs, so the machine stays quiet), then, best of --repeat runs:

- `ps_s`: `orc ps` as a subprocess, start to exit (interpreter start, import, the request,
  the table); `ps_json_s`: `orc ps --json` likewise;
- `get_tasks_s`: the reference, the same `GET /tasks` from an already running Python (httpx),
  the part no client can avoid.

The goal: `orc ps` answers within 1 s at 10,000 tasks. With --json, the last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.orcproc import single_process_orc  # noqa: E402


def fill(addr: str, count: int) -> None:
    """Submit `count` docker tasks (they wait, Pending: no engine answers) in parallel."""
    with httpx.Client(base_url=addr, timeout=60) as client:
        for start in range(0, count, 500):
            batch = range(start, min(count, start + 500))
            for _ in batch:
                task_id = str(uuid.uuid4())
                body = {"ID": task_id, "State": 2, "Task": {"Name": "bench", "Image": "busybox"}}
                r = client.post("/tasks", json=body)
                r.raise_for_status()


def timed(argv: list[str], addr: str) -> float:
    env = {"ORC_ADDR": addr, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orc", *argv], env=env, cwd=ROOT, capture_output=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"orc {' '.join(argv)} failed: {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = {
        "ORC_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "ORC_MAX_PENDING": str(args.tasks * 2),
        "ORC_TASK_RETENTION": "0",
    }
    with single_process_orc(**settings) as addr:
        fill(addr, args.tasks)
        with httpx.Client(base_url=addr, timeout=60) as client:
            reference = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                listed = client.get("/tasks").json()
                reference.append(time.perf_counter() - started)
            assert len(listed) == args.tasks, len(listed)
        ps = min(timed(["ps"], addr) for _ in range(args.repeat))
        ps_json = min(timed(["ps", "--json"], addr) for _ in range(args.repeat))
    result = {
        "tasks": args.tasks,
        "ps_s": round(ps, 3),
        "ps_json_s": round(ps_json, 3),
        "get_tasks_s": round(min(reference), 3),
        "ps_vs_get_tasks": round(ps / min(reference), 2),
    }
    print(f"{'at ' + str(args.tasks) + ' tasks':28}{'seconds':>10}")
    print(f"{'orc ps':28}{ps:>10.3f}")
    print(f"{'orc ps --json':28}{ps_json:>10.3f}")
    print(f"{'GET /tasks (httpx, warm)':28}{min(reference):>10.3f}")
    print(f"goal: orc ps within 1 s: {'met' if ps <= 1.0 else 'not met'}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
