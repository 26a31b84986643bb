"""Running orc as a subprocess for a benchmark: free ports, scratch data, the start line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".bench-tmp"  # same disk as the project; ignored by git


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def orc_env(data_dir: str | Path, **settings: str) -> dict[str, str]:
    """orc's settings for a benchmark: loopback, quiet logs, short stop grace."""
    return {
        **os.environ,
        "ORC_MANAGER_HOST": "127.0.0.1",
        "ORC_MANAGER_PORT": str(free_port()),
        "ORC_WORKER_HOST": "127.0.0.1",
        "ORC_WORKER_PORT": str(free_port()),
        "ORC_DATA_DIR": str(data_dir),
        "ORC_STOP_GRACE": "1",
        "ORC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **settings,
    }


def start(args: list[str], env: dict[str, str], ready: str) -> subprocess.Popen[str]:
    """`orc ARGS`, once it has printed a line starting with `ready`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orc", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(ready):
            return proc
    raise SystemExit(f"orc {' '.join(args)} exited before it started")


@contextmanager
def scratch_dir() -> Iterator[str]:
    SCRATCH.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        yield tmp


@contextmanager
def single_process_orc(**settings: str) -> Iterator[str]:
    """`orc` (manager and one worker) on a scratch data dir; yields the manager's URL and
    stops it with SIGTERM afterwards, which stops its tasks."""
    with scratch_dir() as tmp:
        env = orc_env(tmp, **settings)
        proc = start([], env, "Starting Orc manager")
        try:
            yield f"http://127.0.0.1:{env['ORC_MANAGER_PORT']}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
