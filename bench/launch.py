"""Process-task launch: orc over HTTP against spawning the same processes directly from Python.

Throughput: a burst of tasks submitted concurrently until all are Running, against the same
number of `subprocess.Popen` calls in a row. Latency: tasks submitted one at a time, from the
moment the client sends the request to the task's `StartsAt` (set by the worker once the
process runs), against the time one `Popen` takes.

With `--separate`, the burst also goes through `orc manager` and one `orc worker` in separate
processes (orders cross HTTP from the manager's proxy to the worker), with the CPU time each
process spends per task.

Beside them, the floor: the same POSTs to the bare HTTP stack orc is built on (quart-trio on
hypercorn, `bench/bare_stack.py`), with the server's CPU time per request. One event loop that
did nothing but that and one `Popen` per task would reach `ceiling_vs_direct` of the direct
rate: `popen / (http + popen)`, per task.

    .venv/bin/python bench/launch.py [--burst 500] [--serial 100] [--separate] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import trio
from orcproc import free_port, orc_env, percentile, scratch_dir, single_process_orc, start
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


def separate_processes(burst: int) -> tuple[float, float, float]:
    """The burst through `orc manager` and one `orc worker --manager` (separate processes):
    tasks/s until all are Running, and each process's CPU µs per task."""
    with scratch_dir() as tmp:
        env = orc_env(tmp, ORC_DOCKER_HOST="unix:///nonexistent/docker.sock")
        port, worker_port = env["ORC_MANAGER_PORT"], env["ORC_WORKER_PORT"]
        url = f"http://127.0.0.1:{port}"
        manager = start(["manager", "--data-dir", f"{tmp}/m"], env, "Starting Orc manager")
        worker = start(
            ["worker", "--manager", url, "--port", worker_port, "--data-dir", f"{tmp}/w"],
            env,
            "Starting Orc worker",
        )
        procs = [manager, worker]
        try:
            cpu = [psutil.Process(p.pid) for p in procs]

            async def main() -> tuple[float, float, float]:
                client = Pool("127.0.0.1", int(port), 32)
                try:
                    while not (await client.request("GET", "/nodes"))[1]:
                        await trio.sleep(0.05)
                    used = [sum(c.cpu_times()[:2]) for c in cpu]
                    rate = await _burst(client, burst)
                    spent = [sum(c.cpu_times()[:2]) - u for c, u in zip(cpu, used, strict=True)]
                    return rate, spent[0] / burst * 1e6, spent[1] / burst * 1e6
                finally:
                    await client.aclose()

            return trio.run(main)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=120)


def bare_stack(requests: int) -> tuple[float, float]:
    """Requests/s of the bare stack under the same 32 connections, and its CPU µs per request."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_stack.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if server.stdout is None or server.stdout.readline().strip() != "ready":
            raise SystemExit("bench/bare_stack.py did not start")
        cpu = psutil.Process(server.pid)

        async def main() -> tuple[float, float]:
            client = Pool("127.0.0.1", port, 32)
            try:
                for _ in range(50):  # warm up: imports, first connections
                    await client.request("POST", "/tasks", _event())
                used = sum(cpu.cpu_times()[:2])
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(requests):
                        nursery.start_soon(client.request, "POST", "/tasks", _event())
                elapsed = time.perf_counter() - start
                return requests / elapsed, (sum(cpu.cpu_times()[:2]) - used) / requests * 1e6
            finally:
                await client.aclose()

        return trio.run(main)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--serial", type=int, default=100)
    parser.add_argument(
        "--separate", action="store_true", help="also the burst through separate processes"
    )
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args()

    direct_rate, direct_lat = direct(args.burst, args.serial)
    orc_rate, orc_lat = through_orc(args.burst, args.serial)
    separate = separate_processes(args.burst) if args.separate else None
    stack_rate, stack_cpu_us = bare_stack(max(args.burst, 2000))
    direct_p50 = statistics.median(direct_lat)
    popen_us = 1e6 / direct_rate
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
        "stack_post_per_s": round(stack_rate, 1),
        "stack_cpu_us_per_request": round(stack_cpu_us, 1),
        "ceiling_vs_direct": round(popen_us / (stack_cpu_us + popen_us), 3),
    }
    if separate is not None:
        result["separate_tasks_per_s"] = round(separate[0], 1)
        result["separate_manager_cpu_us_per_task"] = round(separate[1], 1)
        result["separate_worker_cpu_us_per_task"] = round(separate[2], 1)
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
    if separate is not None:
        print(
            f"{'burst, separate processes':28}{separate[0]:>12.1f}{direct_rate:>12.1f}"
            f"{separate[0] / direct_rate:>10.2f}"
        )
        print(
            f"separate processes, CPU per task: manager {separate[1]:.0f} µs,"
            f" worker {separate[2]:.0f} µs"
        )
    print(f"added p50: {result['added_p50_ms']} ms")
    print(
        f"the bare stack (quart-trio on hypercorn): {stack_rate:.0f} POST/s,"
        f" {stack_cpu_us:.0f} µs of server CPU each; with one Popen per task ({popen_us:.0f} µs)"
        f" on top, one event loop reaches at most {result['ceiling_vs_direct']:.2f} of direct"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
