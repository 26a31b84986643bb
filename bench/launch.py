"""Process-task launch: orc over HTTP against spawning the same processes directly from Python.

Throughput: a burst of tasks submitted concurrently until all are Running, against the same
number of `subprocess.Popen` calls in a row. Latency: tasks submitted one at a time, from the
moment the client sends the request to the task's `StartsAt` (set by the worker once the
process runs), against the time one `Popen` takes.

    .venv/bin/python bench/launch.py [--burst 500] [--serial 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import trio
from orcproc import percentile, single_process_orc
from rawhttp import Pool

ROOT = Path(__file__).resolve().parent.parent
CMD = ["sleep", "120"]


def direct(burst: int, serial: int) -> tuple[float, list[float]]:
    procs: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    for _ in range(burst):
        procs.append(subprocess.Popen(CMD, stdin=subprocess.DEVNULL, start_new_session=True))
    rate = burst / (time.perf_counter() - start)
    latencies = []
    for _ in range(serial):
        t0 = time.perf_counter()
        procs.append(subprocess.Popen(CMD, stdin=subprocess.DEVNULL, start_new_session=True))
        latencies.append((time.perf_counter() - t0) * 1000)
    for p in procs:
        p.kill()
        p.wait()
    return rate, latencies


def _event() -> dict:
    task_id = str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Name": "bench", "Cmd": CMD}}


async def _all_running(client: Pool, count: int) -> None:
    while (await client.request("GET", "/stats"))[1]["Tasks"]["Running"] < count:
        await trio.sleep(0.02)  # each poll costs orc a request: do not flood it


async def _submit(client: Pool, event: dict) -> None:
    status, body = await client.request("POST", "/tasks", event)
    if status != 201:
        raise RuntimeError(f"POST /tasks answered {status}: {body}")


async def _burst(client: Pool, n: int) -> float:
    start = time.perf_counter()

    async def one() -> None:
        await _submit(client, _event())

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    await _all_running(client, n)
    return n / (time.perf_counter() - start)


async def _serial(client: Pool, n: int, already: int) -> list[float]:
    sent: dict[str, float] = {}
    for _ in range(n):
        event = _event()
        sent[event["ID"]] = time.time()
        await _submit(client, event)
        await _all_running(client, already + len(sent))
    latencies = []
    for task_id, t0 in sent.items():
        _, task = await client.request("GET", f"/tasks/{task_id}")
        latencies.append((datetime.fromisoformat(task["StartsAt"]).timestamp() - t0) * 1000)
    return latencies


def through_orc(burst: int, serial: int) -> tuple[float, list[float]]:
    with single_process_orc(ORC_DOCKER_HOST="unix:///nonexistent/docker.sock") as url:
        port = int(url.rsplit(":", 1)[1])

        async def main() -> tuple[float, list[float]]:
            client = Pool("127.0.0.1", port, 32)
            try:
                rate = await _burst(client, burst)
                return rate, await _serial(client, serial, burst)
            finally:
                await client.aclose()

        return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--serial", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args()

    direct_rate, direct_lat = direct(args.burst, args.serial)
    orc_rate, orc_lat = through_orc(args.burst, args.serial)
    direct_p50 = statistics.median(direct_lat)
    result = {
        "burst": args.burst,
        "serial": args.serial,
        "orc_tasks_per_s": round(orc_rate, 1),
        "direct_spawn_per_s": round(direct_rate, 1),
        "orc_vs_direct": round(orc_rate / direct_rate, 3),
        "orc_p50_ms": round(statistics.median(orc_lat), 3),
        "orc_p99_ms": round(percentile(orc_lat, 0.99), 3),
        "direct_p50_ms": round(direct_p50, 3),
        "added_p50_ms": round(statistics.median(orc_lat) - direct_p50, 3),
    }
    print(f"{'':28}{'orc':>12}{'direct':>12}{'ratio':>10}")
    print(
        f"{'burst tasks/s (to Running)':28}{orc_rate:>12.1f}{direct_rate:>12.1f}"
        f"{orc_rate / direct_rate:>10.2f}"
    )
    print(
        f"{'serial p50 ms':28}{result['orc_p50_ms']:>12.3f}{direct_p50:>12.3f}"
        f"{result['orc_p50_ms'] / direct_p50:>10.2f}"
    )
    print(f"{'serial p99 ms':28}{result['orc_p99_ms']:>12.3f}{percentile(direct_lat, 0.99):>12.3f}")
    print(f"added p50: {result['added_p50_ms']} ms")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
