"""The one protocol, over both transports: the same messages to a `LocalWorkerProxy` (a Worker
actor in this process) and to an `HttpWorkerProxy` (an `orc worker` process) give the manager
the same updates; orders that wait together go in one batch; orders are dropped once the node
is down (even while they are being retried), and a node back runs what comes next.

The manager's side is a recorder: it answers `PlacedOn` with the tasks told to run there, as a
manager would, and keeps the updates the proxy tells it, which is what the test looks at. A
reconcile (over HTTP, each time the update stream connects) may report a task again: the
manager takes an update it has already applied as a no-op, so the test compares what was
reported, not how often."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from actors import Actor, ActorRef, Supervisor
from orc.clock import now
from orc.core.events import WORKER_UPDATES, NodeDown, TaskExited, TaskStarted
from orc.core.messages import ListWorkerTasks, LogBehind, Ping, PlacedOn, RunTask, StopTask
from orc.core.model import NodeInfo, State, Task
from orc.drivers.process import ProcessDriver
from orc.nodes.base import Resync
from orc.nodes.local import LocalWorkerProxy
from orc.nodes.remote import HttpWorkerProxy
from orc.shell.worker import Worker
from tests.conftest import ROOT, OrcProcess, free_port, orc_env

TRANSPORTS = ("local", "http")


class Recorder(Actor[object]):
    """Stands where the manager stands: answers a proxy's questions, keeps its updates."""

    def __init__(
        self, placed: list[Task], updates: list[object], changed: Callable[[], None]
    ) -> None:
        self.placed = placed
        self.updates = updates
        self.changed = changed

    async def handle(self, message: object) -> object:
        match message:
            case PlacedOn():
                return tuple(self.placed), 0
            case LogBehind() | Ping():
                return None
            case _ if isinstance(message, WORKER_UPDATES):
                self.updates.append(message)
                self.changed()
                return None
        raise TypeError(f"unexpected {message!r}")


@dataclass
class Node:
    """A worker behind its proxy, and what the proxy told the "manager"."""

    proxy: ActorRef[object]
    sup: Supervisor
    placed: list[Task] = field(default_factory=list)
    updates: list[object] = field(default_factory=list)
    worker_url: str = ""  # over HTTP
    worker: ActorRef[object] | None = None  # in process
    _changed: trio.Event = field(default_factory=trio.Event)

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, done: Callable[[list[object]], bool], timeout: float = 15) -> None:
        with trio.fail_after(timeout):
            while not done(self.updates):
                await self._changed.wait()

    async def task_ids(self) -> set[str]:
        """What the worker knows of, asked past the proxy."""
        if self.worker is not None:
            tasks = await self.worker.ask(ListWorkerTasks())
            assert isinstance(tasks, list)
            return {t.id for t in tasks}
        async with httpx.AsyncClient(timeout=10) as client:
            return {t["ID"] for t in (await client.get(f"{self.worker_url}/tasks")).json()}


@asynccontextmanager
async def node(
    transport: str, tmp_path: Path, address: str = "", max_body: int = 65536
) -> AsyncIterator[Node]:
    """A proxy for a worker over `transport` (over HTTP, its body limit `max_body`; the
    worker's is 65536). Nothing runs until `running`, so messages told before wait in the
    proxy's mailbox together."""
    sup = Supervisor("test", max_restarts=0, within=1.0)
    refs: dict[str, ActorRef[object]] = {}
    holder: list[Node] = []
    manager = sup.add(
        "manager", lambda: Recorder(holder[0].placed, holder[0].updates, holder[0].changed)
    )
    if transport == "local":
        info = NodeInfo("n1", "in-process", ("process",))
        drivers = {"process": ProcessDriver(tmp_path / "tasks", stop_grace=1)}
        refs["proxy"] = sup.add(
            "proxy", lambda: LocalWorkerProxy("n1", lambda: refs["worker"], lambda: manager)
        )
        refs["worker"] = sup.add("n1", lambda: Worker(info, drivers, refs["proxy"], now))
        holder.append(Node(refs["proxy"], sup, worker=refs["worker"]))
        yield holder[0]
        return
    worker_process = None
    if not address:
        port = free_port()
        address = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            **orc_env(tmp_path / "w", ORC_ORDERS_MAX_BODY="65536"),
            "PYTHONPATH": str(ROOT),
        }
        args = ["worker", "--port", str(port), "--host", "127.0.0.1", "--name", "n1"]
        worker_process = OrcProcess(
            [*args, "--data-dir", str(tmp_path / "w")], env, "Starting Orc worker"
        )
        worker_process.start()
    proxy = sup.add(
        "proxy",
        lambda: HttpWorkerProxy("n1", address, lambda: manager, lambda: None, max_body=max_body),
    )
    holder.append(Node(proxy, sup, worker_url=f"http://{address}"))
    try:
        yield holder[0]
    finally:
        if worker_process is not None:
            worker_process.kill()


@asynccontextmanager
async def running(n: Node) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(n.sup.run)
        yield
        nursery.cancel_scope.cancel()


def _task(cmd: list[str]) -> Task:
    task_id = str(uuid.uuid4())
    return Task(id=task_id, name="t", cmd=cmd, driver="process", state=State.SCHEDULED)


def _ends(updates: list[object]) -> dict[str, tuple[int | None, bool]]:
    return {u.task_id: (u.exit_code, u.stopped) for u in updates if isinstance(u, TaskExited)}


def _started(updates: list[object]) -> set[str]:
    return {u.task_id for u in updates if isinstance(u, TaskStarted)}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_same_orders_give_the_manager_the_same_updates(
    transport: str, tmp_path: Path
) -> None:
    tasks = [_task(["sh", "-c", f"exit {i % 3}"]) for i in range(40)]
    long = _task(["sleep", "60"])
    async with node(transport, tmp_path) as n:
        n.placed.extend([*tasks, long])
        for task in [*tasks, long]:
            await n.proxy.tell(RunTask(task))
        await n.proxy.tell(StopTask(str(uuid.uuid4())))  # a task it never had: no update
        async with running(n):
            await n.until(lambda u: len(_ends(u)) == len(tasks))
            await n.until(lambda u: long.id in _started(u))
            await n.proxy.tell(StopTask(long.id))
            await n.until(lambda u: long.id in _ends(u))
            await n.proxy.ask(Ping())
            if transport == "http":
                async with httpx.AsyncClient(timeout=10) as client:
                    taken = (await client.get(f"{n.worker_url}/orders")).json()
                # 42 orders told together, then one more; and a reconcile per stream connection
                assert taken["Orders"] >= 43 and taken["Batches"] <= 4, taken

    assert _started(n.updates) == {t.id for t in [*tasks, long]}
    ends = _ends(n.updates)
    assert ends == {**{t.id: (i % 3, False) for i, t in enumerate(tasks)}, long.id: ends[long.id]}
    assert ends[long.id][1], "the stop was asked for"
    exits = {(u.task_id, u.exit_code, u.stopped) for u in n.updates if isinstance(u, TaskExited)}
    assert len(exits) == len(tasks) + 1  # each ended once, however often it was reported
    assert {u.node for u in n.updates if isinstance(u, WORKER_UPDATES)} == {"n1"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_orders_are_dropped_once_the_node_is_down_and_run_again_once_it_is_back(
    transport: str, tmp_path: Path
) -> None:
    dropped, later = _task(["true"]), _task(["true"])
    async with node(transport, tmp_path) as n:
        await n.proxy.tell(RunTask(dropped))
        await n.proxy.tell(NodeDown(at=now(), node="n1", reason="silent"))
        async with running(n):
            await n.proxy.ask(Ping(), timeout=10)
            assert dropped.id not in await n.task_ids()
            await n.proxy.tell(RunTask(_task(["true"])))  # still down: dropped too
            await n.proxy.tell(Resync())
            n.placed.append(later)  # placed once the node is back (`dropped` failed with it)
            await n.proxy.tell(RunTask(later))
            await n.until(lambda u: later.id in _ends(u))
            await n.proxy.ask(Ping(), timeout=10)
            assert await n.task_ids() == {later.id}


async def test_orders_retried_for_a_dead_address_are_dropped_when_word_comes_it_is_down(
    tmp_path: Path,
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async with node("http", tmp_path, address=nobody) as n, running(n):
        await n.proxy.tell(RunTask(_task(["true"])))
        await trio.sleep(0.3)  # a few attempts, backing off
        await n.proxy.tell(NodeDown(at=now(), node="n1", reason="silent"))
        await n.proxy.ask(Ping(), timeout=5)  # the mailbox is not stuck behind the retries
    assert n.updates == []


async def test_a_batch_larger_than_the_worker_takes_goes_in_halves(tmp_path: Path) -> None:
    stops = [StopTask(str(uuid.uuid4())) for _ in range(1000)]  # about 70 kB of orders
    last = _task(["true"])
    async with node("http", tmp_path, max_body=1 << 20) as n:
        for stop in stops:
            await n.proxy.tell(stop)
        n.placed.append(last)
        await n.proxy.tell(RunTask(last))
        async with running(n):
            await n.until(lambda u: last.id in _ends(u))
            async with httpx.AsyncClient(timeout=10) as client:
                taken = (await client.get(f"{n.worker_url}/orders")).json()
    # The 1,001 orders were refused whole (413: the worker takes 65536 bytes), then went as two
    # halves, in order; each reconcile (one per stream connection) is a batch of its own.
    reconciles = taken["Orders"] - len(stops) - 1
    assert reconciles >= 1 and taken["Batches"] - reconciles == 2, taken
