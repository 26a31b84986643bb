"""`GET /metrics` on a running cluster's manager and worker: parsed with prometheus_client's own
parser, its numbers move as tasks run, it answers only with the token when one is set, each
node keeps its own numbers, and `promtool check metrics` accepts the text.

promtool is Debian's `prometheus` package (.ci/run installs it). Without it the promtool test
is skipped, unless ORC_REQUIRE_PROMTOOL is set (as in CI), which makes its absence a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from orc.cmd.manager import run_manager
from orc.cmd.worker import run_worker
from tests.conftest import RunningCluster, make_settings, running_cluster, wait_for_state

PY = sys.executable
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of a `GET /metrics`, by name and labels."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"sample {key} twice"
            samples[key] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _event(cmd: list[str], **task: object) -> dict:
    task_id = str(uuid.uuid4())
    return {"ID": task_id, "State": 2, "Task": {"ID": task_id, "Cmd": cmd, **task}}


async def test_manager_metrics_move_as_a_task_runs(cluster: RunningCluster) -> None:
    before = await scrape(cluster.manager)
    assert value(before, "orc_node_up", node="worker-1") == 1
    assert value(before, "orc_node_cpu_cores", node="worker-1") >= 1
    assert value(before, "orc_tasks", state="Completed") == 0

    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", "pass"]))
    assert r.status_code == 201, r.text
    await wait_for_state(cluster.manager, r.json()["Task"]["ID"], 3)
    after = await scrape(cluster.manager)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("orc_tasks", state="Completed") == 1
    assert sum(value(after, "orc_tasks", state=s) for s in ("Pending", "Scheduled", "Running")) == 0
    # submitted, scheduled, started, exited: each logged before it was applied
    assert moved("orc_eventlog_appends_total") >= 4
    assert moved("orc_eventlog_last_seq") >= 4
    assert moved("orc_eventlog_fsync_seconds_count") >= 1
    assert value(after, "orc_eventlog_fsync_seconds_sum") > 0
    assert moved("orc_http_requests_total", method="POST", route="/tasks", status="201") == 1
    assert moved("orc_http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert (
        value(
            after, "orc_http_requests_total", method="GET", route="/tasks/{task_id}", status="200"
        )
        >= 1
    )
    latency = "orc_http_request_duration_seconds_count"
    assert moved(latency, method="POST", route="/tasks") == 1
    assert moved("orc_placements_total", kind="new") == 1
    # the worker's start and exit reached the manager: each adds its lag
    assert moved("orc_update_lag_seconds_count") == 2
    assert value(after, "orc_update_lag_seconds_bucket", le="+Inf") == value(
        after, "orc_update_lag_seconds_count"
    )
    assert value(after, "orc_snapshot_age_events") == value(after, "orc_eventlog_last_seq")
    # nothing placed now: the node's allocation is back to nothing
    assert value(after, "orc_node_tasks", node="worker-1") == 0


async def test_placement_failures_and_restarts_are_counted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ORC_RESTART_MAX="1", ORC_RESTART_BACKOFF="0.05")
    async with running_cluster(settings) as cluster:
        huge = _event([PY, "-c", "pass"], Memory=1 << 50)  # 1 PiB: no node has it
        r = await cluster.manager.post("/tasks", json=huge)
        assert r.status_code == 201, r.text
        failing = _event([PY, "-c", "raise SystemExit(1)"], RestartPolicy="on-failure")
        r = await cluster.manager.post("/tasks", json=failing)
        await wait_for_state(cluster.manager, r.json()["Task"]["ID"], -1)
        with trio.fail_after(10):
            while True:
                samples = await scrape(cluster.manager)
                if value(samples, "orc_placement_failures_total", reason="memory") == 1:
                    break
                await trio.sleep(0.05)
        assert value(samples, "orc_tasks", state="Pending") == 1
        assert value(samples, "orc_tasks", state="Failed") == 1
        assert value(samples, "orc_task_restarts_total") == 1
        assert value(samples, "orc_placements_total", kind="restart") == 1
        assert value(samples, "orc_placements_total", kind="new") == 1
        assert value(samples, "orc_health_check_failures_total") == 0


async def test_worker_metrics(cluster: RunningCluster) -> None:
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", "pass"]))
    await wait_for_state(cluster.manager, r.json()["Task"]["ID"], 3)
    samples = await scrape(cluster.worker)
    assert value(samples, "orc_worker_tasks", state="Completed") == 1
    assert value(samples, "orc_machine_cpu_cores") == (os.cpu_count() or 1)
    assert (
        0
        < value(samples, "orc_machine_memory_available_bytes")
        <= value(samples, "orc_machine_memory_bytes")
    )
    assert (
        0
        < value(samples, "orc_machine_disk_used_bytes")
        <= value(samples, "orc_machine_disk_bytes")
    )
    assert ("orc_machine_load1", ()) in samples
    assert value(samples, "orc_worker_orders_total") == 0  # in one process: no POST /orders
    again = await scrape(cluster.worker)
    assert (
        value(again, "orc_http_requests_total", method="GET", route="/metrics", status="200") == 1
    )
    # the manager's numbers are not the worker's: each app has its own registry
    manager = await scrape(cluster.manager)
    assert ("orc_worker_tasks", (("state", "Completed"),)) not in manager
    assert ("orc_tasks", (("state", "Completed"),)) not in again


async def test_each_cluster_keeps_its_own_numbers(tmp_path: Path) -> None:
    """Two clusters in one process (as `orc` runs several nodes, and as tests run many
    clusters): what one does never shows in the other's metrics."""
    async with (
        running_cluster(make_settings(tmp_path / "a")) as a,
        running_cluster(make_settings(tmp_path / "b")) as b,
    ):
        quiet = await scrape(b.manager)
        r = await a.manager.post("/tasks", json=_event([PY, "-c", "pass"]))
        await wait_for_state(a.manager, r.json()["Task"]["ID"], 3)
        busy, still = await scrape(a.manager), await scrape(b.manager)
        assert value(busy, "orc_tasks", state="Completed") == 1
        assert value(still, "orc_tasks", state="Completed") == 0
        post = {"method": "POST", "route": "/tasks", "status": "201"}
        assert value(busy, "orc_http_requests_total", **post) == 1
        assert value(still, "orc_http_requests_total", **post) == 0
        assert value(still, "orc_eventlog_appends_total") == value(
            quiet, "orc_eventlog_appends_total"
        )


async def test_the_token_protects_metrics(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ORC_TOKEN="s3cret")
    async with running_cluster(settings) as cluster:
        for client in (cluster.manager, cluster.worker):
            r = await client.get("/metrics")
            assert r.status_code == 401
            assert r.json()["message"].startswith("no token")
            r = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            client.headers["Authorization"] = "Bearer s3cret"
            samples = await scrape(client)
            # the refused scrapes were counted too, under the route they asked for
            refused = {"method": "GET", "route": "/metrics", "status": "401"}
            assert value(samples, "orc_http_requests_total", **refused) == 2


@pytest.fixture
def promtool() -> str:
    """promtool's path; a skip saying why when it is missing (a failure under
    ORC_REQUIRE_PROMTOOL)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("ORC_REQUIRE_PROMTOOL"):
            pytest.fail(
                "promtool is missing and ORC_REQUIRE_PROMTOOL is set: apt-get install prometheus"
            )
        pytest.skip("promtool is not installed (Debian package `prometheus`); CI requires it")
    return found


async def test_promtool_accepts_the_metrics(cluster: RunningCluster, promtool: str) -> None:
    r = await cluster.manager.post("/tasks", json=_event([PY, "-c", "pass"]))
    await wait_for_state(cluster.manager, r.json()["Task"]["ID"], 3)
    await cluster.manager.get("/no-such-route")  # an unmatched route's label, too
    for client in (cluster.manager, cluster.worker):
        await client.get("/tasks")
        text = (await client.get("/metrics")).text
        checked = await trio.to_thread.run_sync(
            lambda text=text: subprocess.run(
                [promtool, "check", "metrics"], input=text, capture_output=True, text=True
            )
        )
        assert checked.returncode == 0, f"{checked.stdout}{checked.stderr}\n{text}"


async def test_separate_manager_and_worker_processes_report_their_own(tmp_path: Path) -> None:
    """`orc manager` and `orc worker` (run here in one process, talking HTTP): the worker
    reports its journal's appends and the orders it took over HTTP, the manager the lag of
    the updates it followed from the worker's stream."""
    manager_settings = make_settings(tmp_path / "m", ORC_NODE_TTL="3")
    url = f"http://127.0.0.1:{manager_settings.manager_port}"
    worker_settings = make_settings(tmp_path / "w", ORC_NODE_TTL="3", ORC_WORKER_NAME="w1")
    stop, up = trio.Event(), {"manager": trio.Event(), "worker": trio.Event()}

    def started(role: str) -> Callable[[str], None]:
        def announce(line: str) -> None:
            if line.startswith("Starting Orc"):
                up[role].set()

        return announce

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_manager, manager_settings, started("manager"), stop)
        with trio.fail_after(20):
            await up["manager"].wait()
        nursery.start_soon(run_worker, worker_settings, url, started("worker"), stop)
        worker_url = f"http://127.0.0.1:{worker_settings.worker_port}"
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as manager,
            httpx.AsyncClient(base_url=worker_url, timeout=10) as worker,
        ):
            with trio.fail_after(20):
                await up["worker"].wait()
                while not (await manager.get("/nodes")).json():
                    await trio.sleep(0.05)
            r = await manager.post("/tasks", json=_event([PY, "-c", "pass"]))
            assert r.status_code == 201, r.text
            await wait_for_state(manager, r.json()["Task"]["ID"], 3)
            on_worker, on_manager = await scrape(worker), await scrape(manager)
        stop.set()
    assert value(on_worker, "orc_eventlog_appends_total") >= 2  # its start and its exit
    assert value(on_worker, "orc_eventlog_fsync_seconds_count") >= 1
    assert value(on_worker, "orc_worker_orders_total") >= 1
    assert value(on_worker, "orc_worker_tasks", state="Completed") == 1
    assert value(on_manager, "orc_update_lag_seconds_count") >= 2
    assert value(on_manager, "orc_node_up", node="w1") == 1
    registered = {"method": "POST", "route": "/nodes", "status": "200"}
    assert value(on_manager, "orc_http_requests_total", **registered) >= 1
