"""Update propagation: how soon the manager's state shows a task's exit on a worker process.

One `orc manager` and three `orc worker` processes on this machine; N short process tasks
(`sleep 0.05`) spread over the workers. For each, the time from its exit on the worker (the
`At` the worker stamps on its TaskExited, wall clock) to the moment a client of the manager's
`GET /events` stream receives that TaskExited. The manager puts an update on that stream only
once it is in its log and applied to its state, so this is an upper bound on "the manager's
state shows it" (it adds the stream's own delivery). Same machine, so the clocks are the same.

The reference is the seed, whose manager polls each worker every 15 s: on average half that.

    .venv/bin/python bench/propagation.py [--tasks 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from orcproc import SCRATCH, free_port, percentile, start

ROOT = Path(__file__).resolve().parent.parent
SEED_POLL_MS = 15_000.0


def run(tasks: int) -> dict[str, float]:
    SCRATCH.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="orc-propagation-", dir=SCRATCH))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ORC_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "ORC_LOG_LEVEL": "WARNING",
        "ORC_NODE_TTL": "3",
    }
    procs = [
        start(
            ["manager", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp / "m")],
            env,
            "Starting Orc manager",
        )
    ]
    try:
        for i in range(3):
            procs.append(
                start(
                    [
                        "worker",
                        "--manager",
                        url,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(free_port()),
                        "--name",
                        f"w{i + 1}",
                        "--data-dir",
                        str(tmp / f"w{i}"),
                    ],
                    env,
                    "Starting Orc worker",
                )
            )
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{url}/nodes").json()) < 3:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not register")
            time.sleep(0.05)
        ids: set[str] = set()
        delays: dict[str, float] = {}
        nodes: dict[str, str] = {}
        done = threading.Event()

        def follow(after: int) -> None:
            """Subscribed before the first submission, so every exit is received live."""
            params = {"after": after, "type": ["TaskExited", "TaskScheduled"]}
            with httpx.stream("GET", f"{url}/events", params=params, timeout=30) as r:
                subscribed.set()
                for line in r.iter_lines():
                    received = time.time()
                    event = json.loads(line).get("Event")
                    if not event:
                        continue
                    if event["Type"] == "TaskScheduled":
                        nodes[event["TaskID"]] = event["Node"]
                        continue
                    at = datetime.fromisoformat(event["At"]).timestamp()
                    delays[event["TaskID"]] = (received - at) * 1000
                    if len(delays) == tasks:
                        done.set()
                        return

        subscribed = threading.Event()
        after = httpx.get(f"{url}/stats").json()["LogSeq"]
        thread = threading.Thread(target=follow, args=(after,), daemon=True)
        thread.start()
        subscribed.wait(10)
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(tasks):
                task_id = str(uuid.uuid4())
                task = {"ID": task_id, "Cmd": ["sleep", "0.05"]}
                r = client.post("/tasks", json={"ID": task_id, "State": 2, "Task": task})
                assert r.status_code == 201, r.text
                ids.add(task_id)
        if not done.wait(60):
            raise SystemExit(f"only {len(delays)} of {tasks} exits arrived")
        values = list(delays.values())
        return {
            "tasks": len(values),
            "nodes": len(set(nodes.values())),
            "p50_ms": round(percentile(values, 0.5), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "max_ms": round(max(values), 2),
            "mean_ms": round(statistics.fmean(values), 2),
            "seed_mean_ms": SEED_POLL_MS / 2,
            "seed_max_ms": SEED_POLL_MS,
        }
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args()
    result = run(args.tasks)
    print(f"{'':24}{'orc (streamed)':>16}{'seed (15 s poll)':>18}{'ratio':>8}")
    print(
        f"{'p50 exit -> manager':24}{result['p50_ms']:>13.1f} ms"
        f"{result['seed_mean_ms']:>15.0f} ms{result['seed_mean_ms'] / result['p50_ms']:>7.0f}x"
    )
    print(
        f"{'p99 exit -> manager':24}{result['p99_ms']:>13.1f} ms"
        f"{result['seed_max_ms']:>15.0f} ms{result['seed_max_ms'] / result['p99_ms']:>7.0f}x"
    )
    print(f"{result['tasks']} tasks over {result['nodes']} worker processes")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
