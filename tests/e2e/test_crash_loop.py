"""SIGKILL at random moments of bursts of process tasks, with `orc` (one process) and with
`orc manager` + `orc worker` (the manager, the worker or both killed): no acknowledged task is
ever lost, none starts twice, none is left non-terminal, each ends as its process did (a task
that exited 0 is Completed, one that exited 3 is Failed with code 3: never "exit status
unknown"), and the log replays with every transition legal (`orc replay --check`).

Every task writes a marker file named by its ID and its shell's pid when it starts, so a task
started twice leaves two. `crash_loop` is the whole experiment; the tests run it at a size
that keeps `make test` quick, and `scripts/crash_soak.py` at the issue's (20 rounds of bursts
of 500 tasks).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from eventlog import EventLog
from orc.core.events import AnyEvent
from orc.core.transitions import TERMINAL
from orc.shell.recovery import load_state
from tests.conftest import ROOT, OrcProcess, free_port, orc_env
from tests.e2e.test_e2e import Orc, kill_task_processes

ROUNDS = 20  # one SIGKILL in each
BURST = 50
SPLIT_ROUNDS = 6

# each task marks its start (its ID and its shell's pid), then ends as its kind says: at once,
# after up to a second, or after half a second with status 3
MARK = 'touch "$MARKS/$ORC_TASK_ID.$$"'
KINDS = {"quick": 0, "slow": 0, "failing": 3}


def _script(kind: str, rng: random.Random) -> str:
    if kind == "slow":
        return f"{MARK}; sleep 0.{rng.randint(1, 9)}"
    if kind == "failing":
        return f"{MARK}; sleep 0.{rng.randint(1, 5)}; exit 3"
    return MARK


class Target:
    """What the loop kills: its manager's URL, its log, and how to kill and start it again."""

    url: str
    data_dir: Path  # the manager's
    processes: list[OrcProcess]
    output: dict[str, deque[str]]  # the last lines each process printed, for a report

    def start(self) -> None:
        self.output = {}
        for p in self.processes:
            self.launch(p)

    def launch(self, p: OrcProcess) -> None:
        """Start `p` and read what it prints from then on: a pipe nobody reads fills, and
        then stalls orc at its next log line."""
        p.start()
        assert p.proc is not None and p.proc.stdout is not None
        lines = self.output.setdefault(" ".join(p.args[:1]) or "orc", deque(maxlen=100))
        threading.Thread(target=lines.extend, args=(p.proc.stdout,), daemon=True).start()

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL some of its processes and start them again; which, for the report."""
        raise NotImplementedError

    def stop(self) -> None:
        for p in self.processes:
            if p.proc is not None and p.proc.poll() is None:
                p.kill(signal.SIGTERM)


class Single(Target):
    """`orc`: the manager and one worker in one process."""

    def __init__(self, tmp: Path) -> None:
        level = os.environ.get("ORC_CRASH_LOG_LEVEL", "WARNING")
        self.orc = Orc(tmp / "data", ORC_STOP_GRACE="1", ORC_LOG_LEVEL=level)
        self.url = self.orc.url
        self.data_dir = self.orc.data_dir
        self.processes = [self.orc]

    def kill_one(self, rng: random.Random) -> str:
        self.orc.kill(signal.SIGKILL)
        self.launch(self.orc)
        return "orc"


class Split(Target):
    """`orc manager` and one `orc worker`; each round kills one of them, or both."""

    def __init__(self, tmp: Path) -> None:
        # ORC_MAX_BODY as by default (or ORC_CRASH_MAX_BODY): a reconcile carries every task
        # placed on the worker in one order, and a worker refuses an order larger than its
        # body limit (the tests' 64 KiB holds about 120 tasks, 1 MiB about 1,900)
        base = orc_env(
            tmp / "m",
            ORC_NODE_TTL="6",
            ORC_STOP_GRACE="1",
            ORC_LOG_LEVEL=os.environ.get("ORC_CRASH_LOG_LEVEL", "WARNING"),
            ORC_MAX_BODY=os.environ.get("ORC_CRASH_MAX_BODY", "1048576"),
        )
        env = {**os.environ, **base, "PYTHONPATH": str(ROOT)}
        self.url = f"http://127.0.0.1:{base['ORC_MANAGER_PORT']}"
        self.data_dir = tmp / "m"
        manager = OrcProcess(["manager", "--data-dir", str(tmp / "m")], env, "Starting Orc manager")
        args = ["worker", "--manager", self.url, "--port", str(free_port()), "--name", "w1"]
        args += ["--host", "127.0.0.1", "--data-dir", str(tmp / "w")]
        worker = OrcProcess(args, env, "Starting Orc worker")
        self.processes = [manager, worker]
        self.by_name = {"manager": manager, "worker": worker}

    def kill_one(self, rng: random.Random) -> str:
        victim = rng.choice(["manager", "worker", "both"])
        chosen = list(self.by_name.values()) if victim == "both" else [self.by_name[victim]]
        for p in chosen:
            p.kill(signal.SIGKILL)
        for p in chosen:
            self.launch(p)
        return victim


@dataclass
class Report:
    """What the loop saw; `problems` lists every broken promise (none, when all is well)."""

    mode: str
    seed: int
    rounds: int
    burst: int
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    lost: int = 0
    started_twice: int = 0
    never_started: int = 0
    non_terminal: int = 0
    unknown_status: int = 0
    wrong_end: int = 0
    replay_check: int = -1
    ids: set[str] = field(default_factory=set)  # the acknowledged tasks
    ends: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = [
            f"{name}: {value}"
            for name, value in (
                ("lost", self.lost),
                ("started twice", self.started_twice),
                ("never started", self.never_started),
                ("left non-terminal", self.non_terminal),
                ("exit status unknown", self.unknown_status),
                ("ended otherwise than their process", self.wrong_end),
            )
            if value
        ]
        if self.replay_check != 0:
            found.append(f"orc replay --check exited {self.replay_check}")
        return found

    def summary(self) -> str:
        return (
            f"{self.mode}: seed {self.seed}, {self.rounds} rounds of {self.burst} tasks,"
            f" {sum(self.kills.values())} SIGKILLs ({dict(self.kills)}), {self.seconds:.0f} s:"
            f" {self.acked} acknowledged, {self.lost} lost, {self.started_twice} started twice,"
            f" {self.never_started} never started, {self.non_terminal} non-terminal,"
            f" {self.unknown_status} with exit status unknown, {self.wrong_end} ended otherwise"
            f" than their process; ends {dict(self.ends)}; replay --check exit"
            f" {self.replay_check}"
        )


async def _submit_all(url: str, bodies: list[dict], acked: set[str]) -> None:
    """Submit every task, retrying each (same ID: idempotent) until orc acknowledges it."""
    limit = trio.Semaphore(16)

    async def one(client: httpx.AsyncClient, body: dict) -> None:
        async with limit:
            while True:
                try:
                    r = await client.post(f"{url}/tasks", json=body)
                except httpx.HTTPError:
                    await trio.sleep(0.05)
                    continue
                if r.status_code in (200, 201):
                    acked.add(body["ID"])
                    return
                assert r.status_code == 503, r.text
                await trio.sleep(0.05)

    async with httpx.AsyncClient(timeout=5) as client, trio.open_nursery() as nursery:
        for body in bodies:
            nursery.start_soon(one, client, body)


def _body(task_id: str, kind: str, script: str, marks: Path) -> dict:
    task = {"ID": task_id, "Name": kind, "Cmd": ["sh", "-c", script], "Env": [f"MARKS={marks}"]}
    return {"ID": task_id, "State": 2, "Task": task}


async def _all_ended(url: str, count: int, timeout: float) -> list[dict]:
    """The tasks, once at least `count` are listed and all have ended (or the time is up)."""
    tasks: list[dict] = []
    async with httpx.AsyncClient(timeout=10) as client:
        with trio.move_on_after(timeout):
            while True:
                try:
                    tasks = (await client.get(f"{url}/tasks")).json()
                except httpx.HTTPError:
                    tasks = []
                if len(tasks) >= count and all(t["State"] in TERMINAL for t in tasks):
                    break
                await trio.sleep(0.2)
    return tasks


async def crash_loop(
    target: Target, tmp: Path, rounds: int, burst: int, seed: int, settle: float = 120.0
) -> Report:
    """`rounds` bursts of `burst` tasks, each with a SIGKILL at a random moment of it."""
    rng = random.Random(seed)
    report = Report(type(target).__name__.lower(), seed, rounds, burst)
    marks = tmp / "marks"
    marks.mkdir()
    kinds: dict[str, str] = {}
    acked: set[str] = set()
    began = time.monotonic()
    target.start()
    try:
        for _ in range(rounds):
            bodies = []
            for _ in range(burst):
                task_id = str(uuid.uuid4())
                kinds[task_id] = rng.choices(list(KINDS), weights=(6, 2, 2))[0]
                script = _script(kinds[task_id], rng)
                bodies.append(_body(task_id, kinds[task_id], script, marks))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_submit_all, target.url, bodies, acked)
                # somewhere in the burst, or while what it started still starts and runs
                await trio.sleep(rng.uniform(0.0, 0.006 * burst + 0.2))
                report.kills[await trio.to_thread.run_sync(target.kill_one, rng)] += 1
        tasks = await _all_ended(target.url, len(kinds), settle)
    finally:
        report.seconds = time.monotonic() - began
        await trio.to_thread.run_sync(target.stop)
        kill_task_processes(tmp)
    _judge(report, kinds, acked, tasks, marks)
    check = subprocess.run(
        [sys.executable, "-m", "orc", "replay", str(target.data_dir), "--check"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    report.replay_check = check.returncode
    if check.returncode != 0:
        report.examples.append(f"orc replay --check: {check.stdout[-2000:]}{check.stderr[-2000:]}")
    if report.problems():
        for name, lines in target.output.items():
            report.examples.append(f"{name} printed, last:\n" + "".join(lines))
    return report


def _judge(
    report: Report, kinds: dict[str, str], acked: set[str], tasks: list[dict], marks: Path
) -> None:
    started = Counter(name.split(".", 1)[0] for name in os.listdir(marks))
    listed = {t["ID"]: t for t in tasks}
    report.ids = set(acked)
    report.acked = len(acked)
    report.lost = len(acked - set(listed))

    def example(what: str, task: dict) -> None:
        if len(report.examples) < 10:
            keys = ("ID", "Name", "StateName", "ExitCode", "Error")
            report.examples.append(f"{what}: { ({k: task.get(k) for k in keys}) }")

    for task_id, task in listed.items():
        runs = started[task_id]
        report.ends[task["StateName"]] += 1
        if task["State"] not in TERMINAL:
            report.non_terminal += 1
            example("non-terminal", task)
            continue
        if runs > 1:
            report.started_twice += 1
            example(f"started {runs} times", task)
        if "unknown" in (task["Error"] or ""):
            report.unknown_status += 1
            example("exit status unknown", task)
        if runs == 0:
            report.never_started += 1
            example("never started", task)
            continue
        code = KINDS[kinds[task_id]]
        want = (3, 0, "") if code == 0 else (-1, 3, "exited with status 3")
        if (task["State"], task["ExitCode"], task["Error"]) != want:
            report.wrong_end += 1
            example(f"should have ended {want}", task)


def _check(report: Report) -> None:
    print(report.summary())
    assert not report.problems(), "\n".join([report.summary(), *report.examples])


def _seed() -> int:
    return int(os.environ.get("ORC_CRASH_SEED", random.randrange(1 << 30)))


async def test_sigkill_loop_loses_nothing_and_starts_nothing_twice(tmp_path: Path) -> None:
    target = Single(tmp_path)
    report = await crash_loop(target, tmp_path, ROUNDS, BURST, _seed())
    _check(report)
    assert report.kills["orc"] == ROUNDS and report.acked == ROUNDS * BURST
    # The log replays with every transition legal (apply refuses illegal ones).
    log = await EventLog.open(target.data_dir / "log", AnyEvent)
    state = load_state(log)
    await log.aclose()
    assert set(state.tasks) == report.ids


async def test_sigkill_loop_of_manager_and_worker_processes(tmp_path: Path) -> None:
    report = await crash_loop(Split(tmp_path), tmp_path, SPLIT_ROUNDS, BURST, _seed())
    _check(report)
    assert report.acked == SPLIT_ROUNDS * BURST
