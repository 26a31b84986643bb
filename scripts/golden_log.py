"""Write a golden event log with orc's real manager: the "older orc" later versions must read.

    .venv/bin/python scripts/golden_log.py OUT_DIR [--rounds N]

Drives the real `Manager` actor (its deciders, restart review, group-committed appends to a
real `EventLog`, `apply`, and its periodic `StateDigest`) with the messages its scheduler,
workers, node monitor, restarter, health checker and reaper would send, at fixed times, so
that every event type orc logs appears, in an order the manager itself accepted. The actors
that would carry the manager's orders out are sinks: the script plays their part.

It writes `OUT_DIR/log/` (the segment files, small segments so that there are several) and
`OUT_DIR/expected.json`: the state digest of the replayed log (`orc.core.snapshot.
state_digest`), the counts per event type, and what wrote it. The golden log in
`tests/replay/golden/events-v1/` was written once with this script, by orc as it was before
events had versions (records as msgpack maps); it is the record of that format and must not be
rewritten. Run the script again only to make a new golden log beside it, in the format of the
day (for example before a change of encoding, as that one was).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from actors import Actor, ActorRef, Supervisor  # noqa: E402
from eventlog import EventLog, open_readonly  # noqa: E402
from orc.core.events import (  # noqa: E402
    AnyEvent,
    TaskExited,
    TaskLost,
    TaskRestarting,
    TaskStarted,
)
from orc.core.messages import (  # noqa: E402
    Join,
    LogBehind,
    NodeSilent,
    Ping,
    Place,
    Purge,
    RestartDue,
    Stop,
    Submit,
    Unhealthy,
)
from orc.core.model import NodeInfo, Task, TaskEvent  # noqa: E402
from orc.core.restarts import RestartSettings  # noqa: E402
from orc.core.snapshot import state_digest  # noqa: E402
from orc.core.state import replay  # noqa: E402
from orc.core.upcast import upcaster  # noqa: E402
from orc.shell.manager import Manager, Upkeep  # noqa: E402
from orc.shell.recovery import open_log  # noqa: E402

SEGMENT_BYTES = 16 * 1024  # small, so the golden log spans several segment files
DIGEST_EVERY = 40
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NODES = ("worker-1", "worker-2", "worker-3")
RESTARTS = RestartSettings(max_restarts=3, backoff=1.0, backoff_max=30.0, reset_after=600.0)
RETENTION = 120.0


class Sink(Actor):
    """Stands in for an actor that would act on the manager's orders: the script does."""

    async def handle(self, message: object) -> object:
        return None


@dataclass
class Driver:
    """The script's side: a clock that only moves forward, IDs, and each node's log seq."""

    manager: ActorRef
    log: EventLog
    rng: random.Random
    clock: datetime = START
    worker_seqs: dict[str, int] = field(default_factory=dict)

    def now(self, ms: int = 1) -> str:
        self.clock += timedelta(milliseconds=ms)
        return self.clock.isoformat()

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def seq(self, node: str) -> int:
        """The node's next worker-log seq (updates from separate worker processes carry one)."""
        self.worker_seqs[node] = self.worker_seqs.get(node, 0) + 1
        return self.worker_seqs[node]

    async def ask(self, message: object) -> object:
        return await self.manager.ask(message, timeout=10)

    async def tell_all(self, messages: list[object]) -> None:
        """Several messages at once, so the manager decides them as one batch (one frame)."""
        for message in messages:
            await self.manager.tell(message)
        await self.ask(Ping())

    async def submit(self, task: Task) -> str:
        await self.ask(Submit(TaskEvent(id=task.id, task=task), self.now()))
        return task.id

    async def run(self, task_id: str, node: str, numbered: bool, **started: object) -> None:
        """Placed on `node`, then started there (a numbered update when `numbered`)."""
        await self.ask(Place(task_id, node, "", self.now(2)))
        seq = self.seq(node) if numbered else 0
        await self.ask(
            TaskStarted(at=self.now(40), task_id=task_id, node=node, worker_seq=seq, **started)
        )

    async def exit(self, task_id: str, node: str, code: int, numbered: bool, **kw: object) -> None:
        seq = self.seq(node) if numbered else 0
        error = "" if code == 0 else f"exit status {code}"
        await self.ask(
            TaskExited(
                at=self.now(500),
                task_id=task_id,
                node=node,
                exit_code=code,
                error=kw.pop("error", error),  # type: ignore[arg-type]
                worker_seq=seq,
                **kw,  # type: ignore[arg-type]
            )
        )

    def not_before(self, task_id: str) -> str:
        """The backoff deadline the log holds for the task's latest restart."""
        found = [
            e
            for _, e in self.log.read(max(1, self.log.last_seq - 20))
            if isinstance(e, TaskRestarting) and e.task_id == task_id
        ]
        return found[-1].not_before

    async def restart_due(self, task_id: str) -> None:
        not_before = self.not_before(task_id)
        self.clock = max(self.clock, datetime.fromisoformat(not_before))
        await self.ask(RestartDue(task_id, not_before, self.now(5)))


def process(task_id: str, name: str, cmd: list[str], policy: str = "", **kw: object) -> Task:
    return Task(
        id=task_id,
        name=name,
        cmd=cmd,
        env=[f"NAME={name}", "MODE=golden"],
        driver="process",
        restart_policy=policy,
        **kw,  # type: ignore[arg-type]
    )


def container(task_id: str, name: str, policy: str, **kw: object) -> Task:
    return Task(
        id=task_id,
        name=name,
        image="orc-test/httpd",
        driver="docker",
        exposed_ports={"80/tcp": {}},
        port_bindings={"80/tcp": "0"},
        restart_policy=policy,
        **kw,  # type: ignore[arg-type]
    )


async def one_round(d: Driver, r: int) -> None:
    """A cluster's afternoon: every kind of task life orc logs, on three nodes."""
    w1, w2, w3 = NODES
    ids = {name: d.new_id() for name in ("web", "job", "flaky", "big", "svc", "lost", "victim")}
    ids["watched"] = d.new_id()

    # submissions: processes and containers, with and without restart policies
    await d.submit(process(ids["web"], f"web-{r}", ["httpd", "-f", "-p", "8080"], "always"))
    await d.submit(process(ids["job"], f"job-{r}", ["sh", "-c", f"echo {r}; sleep 2"], cpu=0.5))
    await d.submit(process(ids["flaky"], f"flaky-{r}", ["false"], "on-failure", memory=64 << 20))
    await d.submit(container(ids["big"], f"big-{r}", "no", cpu=64.0, memory=1 << 40))
    await d.submit(container(ids["svc"], f"svc-{r}", "on-failure", health_check="/health"))
    await d.submit(process(ids["lost"], f"lost-{r}", ["sleep", "600"], "no"))
    await d.submit(process(ids["victim"], f"victim-{r}", ["sleep", "600"]))
    await d.submit(container(ids["watched"], f"watched-{r}", "no", health_check="/ready"))
    # the same submission again is idempotent: no event
    await d.submit(process(ids["job"], f"job-{r}", ["sh", "-c", f"echo {r}; sleep 2"], cpu=0.5))

    # placements: a batch at once, as the scheduler sends them; one task fits nowhere
    now = d.now(3)
    await d.tell_all(
        [
            Place(ids["web"], w1, "", now),
            Place(ids["job"], w2, "", now),
            Place(ids["big"], "", "3 nodes: 3 lack 64 CPUs free", now),
        ]
    )
    ports = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(32000 + r)}]}
    await d.tell_all(
        [
            TaskStarted(at=d.now(30), task_id=ids["web"], node=w1, container_id=f"pid-{r}1"),
            TaskStarted(at=d.now(1), task_id=ids["job"], node=w2, worker_seq=d.seq(w2)),
        ]
    )
    await d.run(ids["flaky"], w1, numbered=False, container_id=f"pid-{r}2")
    await d.run(ids["svc"], w2, numbered=True, container_id=f"{r:02d}c0ffee", host_ports=ports)
    await d.run(ids["lost"], w2, numbered=True, container_id=f"pid-{r}3")
    await d.run(ids["victim"], w3, numbered=True, container_id=f"pid-{r}4")
    await d.run(ids["watched"], w1, numbered=False, container_id=f"{r:02d}beef", host_ports=ports)

    # a job ends well; a flaky task fails, waits out its backoff, runs again and then ends well
    await d.exit(ids["job"], w2, 0, numbered=True)
    await d.exit(ids["flaky"], w1, 1, numbered=False)
    await d.restart_due(ids["flaky"])
    await d.ask(TaskStarted(at=d.now(30), task_id=ids["flaky"], node=w1, container_id="pid-x"))
    await d.exit(ids["flaky"], w1, 0, numbered=False)

    # a service fails its health check: orc stops it, and its policy restarts it
    svc = ids["svc"]
    starts_at = await _starts_at(d, svc)
    await d.ask(Unhealthy(svc, w2, starts_at, 3, "GET /health: 503", d.now(3000)))
    await d.exit(svc, w2, 143, numbered=True, stopped=True, error="")
    await d.restart_due(svc)
    await d.ask(TaskStarted(at=d.now(30), task_id=svc, node=w2, worker_seq=d.seq(w2)))
    # a check that fails on a task whose policy is `no`: it only says so
    watched = ids["watched"]
    await d.ask(Unhealthy(watched, w1, await _starts_at(d, watched), 3, "timed out", d.now()))

    # a worker finds no trace of a task it ran (its own restart lost it)
    await d.ask(TaskLost(at=d.now(), task_id=ids["lost"], node=w2, error="no such process",
                         worker_seq=d.seq(w2)))  # fmt: skip

    # clients stop things: one never placed, one running, the restarted service
    await d.ask(Stop(ids["big"], d.now(100)))
    await d.ask(Stop(ids["web"], d.now(100)))
    await d.exit(ids["web"], w1, 143, numbered=False, stopped=True)
    await d.ask(Stop(svc, d.now(100)))
    await d.exit(svc, w2, 0, numbered=True, stopped=True)
    await d.ask(Stop(watched, d.now(100)))
    await d.exit(watched, w1, 137, numbered=False, stopped=True)

    # a node goes silent: it is down and its task failed; later it comes back
    await d.ask(NodeSilent(w3, "no heartbeat for 15s", d.now(15_000)))
    await d.ask(Join(_node(w3, r), d.now(2_000)))
    if r % 2 == 1:
        # a worker's data directory was replaced: its log starts again below what was applied
        await d.ask(LogBehind(w2, 0, d.now()))
        d.worker_seqs[w2] = 0

    # the reaper forgets what ended long enough ago
    d.clock += timedelta(seconds=RETENTION / 2)
    await d.ask(Purge(d.now(), RETENTION))


async def epilogue(d: Driver) -> None:
    """Leave the cluster mid-flight, so the final state holds every kind of entry: tasks
    Running and Pending, a restart waiting out its backoff, a stop and an unhealthy stop not
    yet carried out, a node down, and per-node worker seqs."""
    w1, w2, w3 = NODES
    run, wait, stop, sick, pending, gone = (d.new_id() for _ in range(6))
    await d.submit(process(run, "tail-run", ["httpd", "-f"], "always"))
    await d.submit(process(wait, "tail-wait", ["false"], "on-failure"))
    await d.submit(process(stop, "tail-stop", ["sleep", "600"]))
    await d.submit(container(sick, "tail-sick", "on-failure", health_check="/health"))
    await d.submit(container(pending, "tail-pending", "no", cpu=64.0))
    await d.submit(process(gone, "tail-gone", ["sleep", "600"], "no"))
    await d.ask(Place(pending, "", "3 nodes: 3 lack 64 CPUs free", d.now()))
    await d.run(run, w1, numbered=False, container_id="pid-run")
    await d.run(wait, w2, numbered=True, container_id="pid-wait")
    await d.exit(wait, w2, 2, numbered=True)
    await d.run(stop, w1, numbered=False, container_id="pid-stop")
    await d.ask(Stop(stop, d.now(100)))
    ports = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32999"}]}
    await d.run(sick, w2, numbered=True, container_id="c0ffeec0ffee", host_ports=ports)
    await d.ask(Unhealthy(sick, w2, await _starts_at(d, sick), 3, "GET /health: 500", d.now()))
    await d.run(gone, w3, numbered=True, container_id="pid-gone")
    await d.ask(NodeSilent(w3, "no heartbeat for 15s", d.now(15_000)))


async def _starts_at(d: Driver, task_id: str) -> str:
    from orc.core.messages import GetTask

    reply = await d.ask(GetTask(task_id))
    return reply.task.starts_at  # type: ignore[attr-defined]


def _node(name: str, r: int) -> NodeInfo:
    i = NODES.index(name) + 1
    drivers = ("process", "docker") if name != "worker-3" else ("process",)
    return NodeInfo(name, f"10.0.0.{i}:8888", drivers, cores=4 + i, memory=8 << 30, disk=r << 30)


async def write(log_dir: Path, rounds: int) -> None:
    sup = Supervisor("golden", max_restarts=0, within=1.0)
    log = await open_log(log_dir, AnyEvent, SEGMENT_BYTES)
    sink = sup.add("sink", Sink)
    proxies = {name: sink for name in NODES}
    manager = sup.add(
        "manager",
        lambda: Manager(
            log,
            sink,
            proxies,
            Upkeep(digest=DIGEST_EVERY, snapshot=0, retain=0),
            restarts=RESTARTS,
            restarter=sink,
            health=sink,
        ),
    )
    d = Driver(manager, log, random.Random(12))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        for name in NODES:
            await d.ask(Join(_node(name, 0), d.now()))
        for r in range(rounds):
            await one_round(d, r)
            d.clock += timedelta(minutes=5)
        await epilogue(d)
        nursery.cancel_scope.cancel()
    await log.aclose()


def summary(log_dir: Path) -> dict[str, object]:
    reader = open_readonly(log_dir, AnyEvent, older=upcaster(AnyEvent))
    events = [e for _, e in reader.read()]
    state = replay(events)
    counts = Counter(type(e).__name__ for e in events)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"], check=False)
    if dirty.returncode:
        commit += " with uncommitted changes"
    return {
        "written_by": f"scripts/golden_log.py at orc commit {commit}",
        "last_seq": reader.last_seq,
        # the files as written: a test checks that nobody rewrites them
        "segments": {
            Path(s.path).name: hashlib.sha256(Path(s.path).read_bytes()).hexdigest()
            for s in reader.segments
        },
        "state_digest": state_digest(state),
        "tasks": len(state.tasks),
        "nodes": len(state.nodes),
        "counts": dict(sorted(counts.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new directory: OUT/log and OUT/expected.json")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    log_dir = args.out / "log"
    if log_dir.exists():
        sys.exit(f"{log_dir} exists: the golden log is never rewritten; choose a new directory")
    trio.run(write, log_dir, args.rounds)
    os.unlink(log_dir / "LOCK")  # the writer's lock file: nothing to keep
    result = summary(log_dir)
    (args.out / "expected.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
