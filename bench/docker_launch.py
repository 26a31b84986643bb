"""Container launch: 20 containers of one local image through orc, the Docker SDK, and Swarm.

All on the same engine, in one run, from the moment of submission until every container runs:

- `orc_s`: `orc` (a subprocess) takes 20 concurrent POST /tasks; timed until GET /stats counts
  20 Running (the worker reports Running once `docker start` has returned).
- `sdk_seq_s`, `sdk_4threads_s`: `containers.create` + `start` directly with the SDK, one after
  another and from 4 threads; `sdk_best_s` is the faster.
- `swarm_s`: `docker swarm init --advertise-addr 127.0.0.1`, then `docker service create
  --replicas 20` (detached), timed until all 20 tasks are running; then the service is removed
  and the engine leaves the swarm (skipped, with a note, if the engine is already in a swarm).

The image is the test `sleep` image, imported from busybox-static (tests/images.py).

    .venv/bin/python bench/docker_launch.py [--count 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import httpx
import trio
from orcproc import single_process_orc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import images  # noqa: E402

LABEL = "orc.bench"


def _cleanup(client: docker.DockerClient, run: str) -> None:
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}={run}"}):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(c["Id"], force=True)


def sdk(client: docker.DockerClient, image: str, count: int, threads: int, run: str) -> float:
    def one(_: int) -> None:
        c = client.containers.create(image, detach=True, labels={LABEL: run})
        c.start()

    start = time.perf_counter()
    if threads == 1:
        for i in range(count):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - start
    _cleanup(client, run)
    return elapsed


def through_orc(image: str, count: int) -> float:
    with single_process_orc() as url:

        async def main() -> float:
            limits = httpx.Limits(max_connections=count)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                await client.get("/stats")  # connection warm, nothing else

                async def submit() -> None:
                    task_id = str(uuid.uuid4())
                    body = {"ID": task_id, "State": 2, "Task": {"Name": "", "Image": image}}
                    r = await client.post("/tasks", json=body)
                    assert r.status_code == 201, r.text

                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(count):
                        nursery.start_soon(submit)
                while (await client.get("/stats")).json()["Tasks"]["Running"] < count:
                    await trio.sleep(0.005)
                return time.perf_counter() - start

        return trio.run(main)


def swarm(client: docker.DockerClient, image: str, count: int) -> float | None:
    if client.info().get("Swarm", {}).get("LocalNodeState") != "inactive":
        print("swarm: the engine is already in a swarm; not touching it", file=sys.stderr)
        return None
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    try:
        start = time.perf_counter()
        mode = {"Replicated": {"Replicas": count}}
        service = client.services.create(image, name=f"orc-bench-{uuid.uuid4().hex[:6]}", mode=mode)
        while True:
            tasks = service.tasks(filters={"desired-state": "running"})
            if sum(1 for t in tasks if t["Status"]["State"] == "running") >= count:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        service.remove()
        deadline = time.monotonic() + 60
        label = f"com.docker.swarm.service.id={service.id}"
        while client.api.containers(all=True, filters={"label": label}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return elapsed
    finally:
        client.swarm.leave(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args()

    client = docker.from_env(version="auto", timeout=120)
    tag = f"bench{uuid.uuid4().hex[:6]}"
    built = images.build(client, tag)
    image = built["sleep"]
    run = uuid.uuid4().hex[:8]
    try:
        sdk(client, image, 2, 1, run)  # warm the engine's image and layer caches
        seq = sdk(client, image, args.count, 1, run)
        par = sdk(client, image, args.count, 4, run)
        orc = through_orc(image, args.count)
        sw = swarm(client, image, args.count)
    finally:
        _cleanup(client, run)
        images.remove(client, tag)
    best = min(seq, par)
    result = {
        "count": args.count,
        "orc_s": round(orc, 3),
        "sdk_seq_s": round(seq, 3),
        "sdk_4threads_s": round(par, 3),
        "sdk_best_s": round(best, 3),
        "swarm_s": round(sw, 3) if sw is not None else None,
        "orc_vs_sdk_best": round(orc / best, 2),
        "orc_vs_swarm": round(orc / sw, 2) if sw else None,
    }
    print(f"{args.count} containers, submission to all running")
    print(f"{'':22}{'seconds':>10}{'orc / this':>12}")
    rows = [("orc", orc), ("SDK sequential", seq), ("SDK 4 threads", par)]
    rows += [("Docker Swarm", sw)] if sw is not None else []
    for name, value in rows:
        print(f"{name:22}{value:>10.3f}{orc / value:>12.2f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
