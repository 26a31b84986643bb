"""Highly available managers on etcd: submit throughput beside one manager on its file log,
and how long a failover takes.

- `single_submit_per_s`: `POST /tasks` acknowledged per second by one `orc manager` on its
  file log (no workers: the tasks wait, so only the manager's path is measured), `--tasks`
  submissions over 32 keep-alive connections.
- `ha_submit_per_s`: the same against the leader of three `orc manager --etcd` processes on
  a 3-member etcd cluster (each task a durable etcd write, group-committed). The goal: at
  least 0.8x `single_submit_per_s`.
- `failover_p50_s`, `failover_max_s`: over `--kills` SIGKILLs of the leader (three managers,
  one worker), the seconds from the kill until another manager says it leads. The goal:
  within the lease TTL (`lease_ttl_s`, ORC_LEASE_TTL) plus one second.

    .venv/bin/python bench/ha.py [--tasks 2000] [--kills 20] [--ttl 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import trio
from orcproc import orc_env, scratch_dir, start
from rawhttp import Pool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ha.cluster import HaCluster  # noqa: E402  (the tests' harness)

CONNECTIONS = 32


def _event() -> dict:
    task_id = str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": ["sleep", "60"]}}


def submit_rate(url: str, n: int) -> float:
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def main() -> float:
        pool = Pool(host, int(port), CONNECTIONS)
        todo = [_event() for _ in range(n)]
        try:
            start_ = time.perf_counter()

            async def one(event: dict) -> None:
                status, body = await pool.request("POST", "/tasks", event)
                if status != 201:
                    raise RuntimeError(f"POST /tasks answered {status}: {body}")

            async with trio.open_nursery() as nursery:
                for event in todo:
                    nursery.start_soon(one, event)
            return n / (time.perf_counter() - start_)
        finally:
            await pool.aclose()

    return trio.run(main)


def single(n: int) -> float:
    with scratch_dir() as tmp:
        env = orc_env(tmp, ORC_MAX_PENDING=str(n + 1))
        proc = start(["manager", "--data-dir", f"{tmp}/m"], env, "Starting Orc manager")
        try:
            return submit_rate(f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}", n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def ha(n: int, ttl: int) -> float:
    with scratch_dir() as tmp:
        env = {"ORC_MAX_PENDING": str(n + 1), "ORC_LOG_LEVEL": "WARNING"}
        with HaCluster(Path(tmp), managers=3, workers=0, lease_ttl=ttl, env=env) as cluster:
            return submit_rate(cluster.wait_leader().url, n)


def failovers(kills: int, ttl: int) -> list[float]:
    times: list[float] = []
    with scratch_dir() as tmp:
        env = {"ORC_LOG_LEVEL": "WARNING"}
        with HaCluster(Path(tmp), managers=3, workers=1, lease_ttl=ttl, env=env) as cluster:
            cluster.submit(5)
            for i in range(kills):
                leader = cluster.wait_leader(timeout=ttl + 30)
                t0 = time.monotonic()
                cluster.kill(leader, signal.SIGKILL)
                cluster.wait_leader(timeout=ttl + 30, other_than=leader)
                times.append(time.monotonic() - t0)
                print(f"  kill {i + 1}: {times[-1]:.2f} s", file=sys.stderr)
                cluster.restart(leader)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--ttl", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    one = single(args.tasks)
    three = ha(args.tasks, args.ttl)
    one_after = single(args.tasks)  # both sides of the HA run: the machine is noisy
    reference = (one + one_after) / 2
    times = failovers(args.kills, args.ttl) or [float("nan")]  # --kills 0: submissions only
    result = {
        "ha_submit_per_s": round(three, 1),
        "single_submit_per_s": round(reference, 1),
        "ha_vs_single": round(three / reference, 3),
        "failover_p50_s": round(statistics.median(times), 2),
        "failover_max_s": round(max(times), 2),
        "lease_ttl_s": args.ttl,
        "kills": args.kills,
    }
    print(f"{'one manager, file log':34}{reference:>10.1f} submissions/s")
    print(f"{'three managers on etcd':34}{three:>10.1f} submissions/s")
    print(f"{'ratio (goal >= 0.8)':34}{three / reference:>10.3f}")
    print(f"{'failover p50 / max':34}{result['failover_p50_s']:>10.2f} / {max(times):.2f} s")
    print(f"{'goal: lease TTL + 1 s':34}{args.ttl + 1:>10.2f} s")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
