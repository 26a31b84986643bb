"""`orc` with no command: one process, a whole cluster. The manager's actors (as `orc manager`
builds them) and `worker_count` workers (as `orc worker` builds them), each with its HTTP
server, under one supervisor; each worker is reached through a `LocalWorkerProxy` over memory
channels instead of HTTP. Every worker declares the attributes of ORC_WORKER_ATTRS (they run
on one machine), for jobs' constraints and spread.

Shutdown runs in order so nothing is lost: HTTP servers stop taking requests, workers stop
their tasks and report it, the manager logs those reports, then the log closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from actors import ActorRef, Supervisor
from eventlog import EventLog
from orc.clock import now
from orc.cmd.lifecycle import (
    MAILBOX,
    Process,
    Serve,
    ask_quietly,
    open_event_log,
    run_process,
    supervisor,
)
from orc.cmd.manager import ManagerActors, build_manager, drain_manager, manager_http_app
from orc.cmd.worker import node_info, probe_docker, say_attrs, watch_engine, worker_drivers
from orc.config import Settings
from orc.core.events import AnyEvent
from orc.core.messages import Disown, Join, ListTasks, ListWorkerTasks, Ping, Shutdown
from orc.core.model import NodeInfo
from orc.drivers.base import Driver
from orc.drivers.docker import DockerDriver
from orc.http.app import require_token
from orc.http.worker import worker_app
from orc.nodes.local import LocalWorkerProxy
from orc.shell.log import ManagerLog
from orc.shell.worker import Worker

log = logging.getLogger("orc")


@dataclass
class WorkerNode:
    info: NodeInfo
    port: int
    worker: ActorRef
    proxy: ActorRef
    docker: DockerDriver


@dataclass
class Cluster:
    """The refs a running single-process cluster is made of."""

    actors: ManagerActors
    workers: list[WorkerNode] = field(default_factory=list)

    @property
    def log(self) -> ManagerLog:
        return self.actors.log

    @property
    def manager(self) -> ActorRef:
        return self.actors.manager

    @property
    def scheduler(self) -> ActorRef:
        return self.actors.scheduler

    @property
    def restarter(self) -> ActorRef:
        return self.actors.restarter

    @property
    def health(self) -> ActorRef:
        return self.actors.health


def build(
    settings: Settings, sup: Supervisor, event_log: EventLog, docker_up: bool = False
) -> Cluster:
    """`docker_up`: whether an engine answered; workers advertise docker only then."""
    cluster = Cluster(build_manager(settings, sup, event_log))
    docker_limiter = trio.CapacityLimiter(8)
    for i in range(settings.worker_count):
        name = f"worker-{i + 1}"
        port = settings.worker_port + i
        address = f"{settings.worker_host}:{port}"
        # Every worker of the process gets ORC_WORKER_ATTRS: they share one machine.
        info = node_info(name, address, settings.data_dir, docker_up, settings.worker_attrs)
        drivers, docker = worker_drivers(settings, name, docker_limiter)
        worker, proxy = _add_worker(sup, info, drivers, cluster.manager)
        cluster.actors.proxies[name] = proxy
        cluster.workers.append(WorkerNode(info, port, worker, proxy, docker))
    return cluster


def _add_worker(
    sup: Supervisor, info: NodeInfo, drivers: dict[str, Driver], manager: ActorRef
) -> tuple[ActorRef, ActorRef]:
    refs: dict[str, ActorRef] = {}
    refs["proxy"] = sup.add(
        f"{info.name}-proxy",
        lambda: LocalWorkerProxy(info.name, lambda: refs["worker"], lambda: manager),
        mailbox_size=MAILBOX,
    )
    refs["worker"] = sup.add(
        info.name,
        lambda: Worker(info, drivers, refs["proxy"], now),
        mailbox_size=MAILBOX,
    )
    return refs["worker"], refs["proxy"]


async def run_cluster(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or until `stop` is set), then shut down in order."""
    if settings.etcd_endpoints:
        log.warning(
            "ORC_ETCD_ENDPOINTS is set, but `orc` runs one manager with its file log: highly"
            " available managers are `orc manager` processes (docs/ha.md)"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    event_log = await open_event_log(settings.data_dir / "log", AnyEvent, settings.segment_bytes)
    sup = supervisor("orc")
    docker_up = await probe_docker(settings)
    cluster = build(settings, sup, event_log, docker_up)

    async def start(nursery: trio.Nursery, serve: Serve) -> None:
        for node in cluster.workers:
            await cluster.manager.ask(Join(node.info, now()), timeout=30)
            announce(f"Orc worker {node.info.name} drivers: {', '.join(node.info.drivers)}")
            if node.info.attrs:
                announce(f"Orc worker {node.info.name} attributes: {say_attrs(node.info)}")
            nursery.start_soon(_rejoin_on_engine_change, cluster, node, settings.docker_ping)
        await _report_strays(cluster)
        for node in cluster.workers:
            app = worker_app(
                node.worker, settings.data_dir, settings.max_body, settings.orders_max_body
            )
            require_token(app, settings.token)
            await serve(app, settings.worker_host, node.port)
            announce(f"Starting Orc worker at {settings.worker_host}:{node.port}")
        app = manager_http_app(cluster.actors, settings, cluster.actors.proxies, None)
        await serve(app, settings.manager_host, settings.manager_port)
        announce(f"Starting Orc manager at {settings.manager_host}:{settings.manager_port}")

    async def drain() -> None:
        await drain_cluster(cluster, settings)

    await run_process(Process("orc", event_log, sup, start, drain), stop)


async def _rejoin_on_engine_change(cluster: Cluster, node: WorkerNode, interval: float) -> None:
    async def rejoin(info: NodeInfo) -> None:
        node.info = info
        await cluster.manager.ask(Join(info, now()), timeout=30)

    await watch_engine(node.docker, lambda: node.info, rejoin, interval)


async def _report_strays(cluster: Cluster) -> None:
    """Containers (or processes) a worker adopted whose task the manager does not know are
    reported and left alone: orc did not start them in this installation's memory, so it does
    not kill them."""
    tasks = await cluster.manager.ask(ListTasks(), timeout=30)
    known = {task.id for task in tasks}  # type: ignore[attr-defined]
    for node in cluster.workers:
        adopted = await node.worker.ask(ListWorkerTasks(), timeout=30)
        for task in adopted:  # type: ignore[attr-defined]
            if task.id not in known:
                log.warning(
                    "worker %s: %s %s runs task %s, which the manager does not know;"
                    " left running (remove it yourself if it is not wanted)",
                    node.info.name,
                    "container" if task.container_id else "process",
                    task.container_id[:12] or task.name,
                    task.id,
                )
                await node.worker.ask(Disown(task.id), timeout=30)


async def drain_cluster(cluster: Cluster, settings: Settings) -> None:
    """Stop every task and make sure its last state is in the log before it closes."""
    timeout = settings.stop_grace + 10

    async def stop_workers() -> None:
        async with trio.open_nursery() as nursery:
            for node in cluster.workers:
                nursery.start_soon(ask_quietly, node.worker, Shutdown(), timeout)
        for node in cluster.workers:
            await ask_quietly(node.proxy, Ping(), timeout)

    await drain_manager(cluster.actors, timeout, stop_workers)
