"""Shared fixtures: free ports, settings on a temporary data dir, an in-process cluster."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from orc import config
from orc.cmd.cluster import run_cluster

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

# One marker per layer, from the folder a test lives in: `pytest -m core` runs the pure tests
# alone (no trio, no I/O) in seconds; `-m "not e2e"` leaves out the real-process tests.
LAYERS = (
    "core",
    "eventlog",
    "actors",
    "shell",
    "drivers",
    "nodes",
    "http",
    "replay",
    "e2e",
    "layout",
    "ui",
    "ha",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


# Ports for the servers the tests start. The kernel's own pick (a bind to port 0) comes from its
# ephemeral range (32768-60999 here), which outgoing connections, Docker's published ports and
# the other pytest-xdist worker all draw from too: between free_port() and the server's bind, any
# of them may take the port. So free_port() picks below that range, at random, a block of
# PORT_BLOCK ports (`orc` listens on ORC_WORKER_PORT + i for each of its ORC_WORKER_COUNT workers)
# that nothing holds, and claims it with a lock on the block's bytes of one file in /tmp: every
# test process on the machine (this run's other worker, other runs) passes over a claimed block.
# The locks go with the process that took them (fcntl locks are not inherited by children).
PORT_LOW, PORT_BLOCK = 10000, 4
PORT_LOCKS = Path(tempfile.gettempdir()) / f"orc-test-ports-{os.getuid()}.lock"
_claimed: set[int] = set()
_pick = random.Random()  # its own: hypothesis seeds the global one in its tests
_locks: list[int] = []  # the open lock file: closing it would drop every claim


def _ports_below() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """The first of PORT_BLOCK ports in a row that nothing holds, for a server to listen on."""
    if not _locks:
        _locks.append(os.open(PORT_LOCKS, os.O_RDWR | os.O_CREAT, 0o600))
    high = _ports_below()
    for _ in range(1000 if high - PORT_LOW >= 1000 else 0):
        port = _pick.randrange(PORT_LOW, high - PORT_BLOCK, PORT_BLOCK)
        if port in _claimed:
            continue
        try:
            fcntl.lockf(_locks[0], fcntl.LOCK_EX | fcntl.LOCK_NB, PORT_BLOCK, port)
        except OSError:
            continue  # another test process claimed it
        _claimed.add(port)
        if all(_free(p) for p in range(port, port + PORT_BLOCK)):
            return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's pick
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


class OrcProcess:
    """`python -m orc ARGS` as a child process, ready once it prints a line starting with
    `ready`; `start` again after a kill to restart it on the same data dir."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str) -> None:
        self.args, self.env, self.ready = args, env, ready
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orc", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"orc {self.args} exited early:\n{''.join(self.lines)}")
            self.lines.append(line)
            if line.startswith(self.ready):
                return
        raise AssertionError(f"orc {self.args} did not start:\n{''.join(self.lines)}")

    def output(self) -> str:
        """Everything it printed; call once it has exited."""
        assert self.proc is not None and self.proc.stdout is not None
        return "".join(self.lines) + self.proc.stdout.read()

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Signal it if it runs, and wait for it; its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m orc ARGS` as a user runs it; whatever it says, never a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "orc", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def make_settings(data_dir: Path, **overrides: str) -> config.Settings:
    return config.load(orc_env(data_dir, **overrides), dotenv=Path("/nonexistent"))


@dataclass
class RunningCluster:
    settings: config.Settings
    manager: httpx.AsyncClient
    worker: httpx.AsyncClient
    stop: trio.Event
    done: trio.Event
    lines: list[str]


@contextlib.asynccontextmanager
async def running_cluster(settings: config.Settings) -> AsyncIterator[RunningCluster]:
    """`run_cluster` in this process, with clients for its manager and first worker; stopped
    (in order, as SIGTERM would) on the way out."""
    stop, done, ready = trio.Event(), trio.Event(), trio.Event()
    lines: list[str] = []

    def announce(line: str) -> None:
        lines.append(line)
        if line.startswith("Starting Orc manager"):
            ready.set()

    async def run() -> None:
        try:
            await run_cluster(settings, announce, stop)
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(20):
            await ready.wait()
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.manager_port}", timeout=10
            ) as manager,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.worker_port}", timeout=10
            ) as worker,
        ):
            yield RunningCluster(settings, manager, worker, stop, done, lines)
        stop.set()
        with trio.fail_after(30):
            await done.wait()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RunningCluster]:
    async with running_cluster(make_settings(tmp_path / "data")) as running:
        yield running


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
