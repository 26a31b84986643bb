"""Shared fixtures: free ports, settings on a temporary data dir, an in-process cluster."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from orc import config
from orc.node import run_cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orc_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Settings for a test cluster: loopback, free ports, a short stop grace."""
    return {
        "ORC_MANAGER_HOST": "127.0.0.1",
        "ORC_MANAGER_PORT": str(free_port()),
        "ORC_WORKER_HOST": "127.0.0.1",
        "ORC_WORKER_PORT": str(free_port()),
        "ORC_DATA_DIR": str(data_dir),
        "ORC_STOP_GRACE": "2",
        "ORC_MAX_BODY": "65536",
        # no Docker engine unless a test asks for one (tests/test_docker.py does)
        "ORC_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        **overrides,
    }


def make_settings(data_dir: Path, **overrides: str) -> config.Settings:
    return config.load(orc_env(data_dir, **overrides), dotenv=Path("/nonexistent"))


@dataclass
class RunningCluster:
    settings: config.Settings
    manager: httpx.AsyncClient
    worker: httpx.AsyncClient
    stop: trio.Event
    done: trio.Event


@pytest.fixture
async def cluster(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[RunningCluster]:
    settings = make_settings(tmp_path / "data")
    stop, done, ready = trio.Event(), trio.Event(), trio.Event()
    lines: list[str] = []

    def announce(line: str) -> None:
        lines.append(line)
        if "manager" in line:
            ready.set()

    async def run() -> None:
        try:
            await run_cluster(settings, announce, stop)
        finally:
            done.set()

    nursery.start_soon(run)
    with trio.fail_after(20):
        await ready.wait()
    manager_url = f"http://127.0.0.1:{settings.manager_port}"
    worker_url = f"http://127.0.0.1:{settings.worker_port}"
    async with (
        httpx.AsyncClient(base_url=manager_url, timeout=10) as manager,
        httpx.AsyncClient(base_url=worker_url, timeout=10) as worker,
    ):
        yield RunningCluster(settings, manager, worker, stop, done)
    stop.set()
    with trio.fail_after(20):
        await done.wait()


async def wait_for_state(
    client: httpx.AsyncClient, task_id: str, state: int, timeout: float = 10
) -> dict:
    """Poll GET /tasks/{id} until the task reaches `state`; fail with its last body."""
    body: dict = {}
    with trio.move_on_after(timeout):
        while True:
            r = await client.get(f"/tasks/{task_id}")
            body = r.json()
            if body.get("State") == state:
                return body
            await trio.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached State {state}; last seen {body}")
