"""One process, a whole cluster: the manager, its scheduler and `worker_count` workers, each
with its HTTP server, under one supervisor.

Shutdown runs in order so nothing is lost: HTTP servers stop taking requests, workers stop
their tasks and report it, the manager logs those reports, then the log closes.
"""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio
from quart_trio import QuartTrio

from actors import ActorRef, Supervisor
from eventlog import EventLog
from orc.clock import now
from orc.config import Settings
from orc.core.events import AnyEvent
from orc.core.messages import Disown, Hold, Join, ListTasks, ListWorkerTasks, Ping, Shutdown
from orc.core.model import NodeInfo
from orc.core.restarts import RestartSettings
from orc.drivers.base import Driver
from orc.drivers.docker import DockerDriver
from orc.drivers.process import ProcessDriver
from orc.http.app import require_token, serve_app
from orc.http.events import add_event_stream
from orc.http.history import add_history_route
from orc.http.manager import manager_app
from orc.http.nodes import add_manager_node_routes
from orc.http.worker import worker_app
from orc.nodes.local import LocalWorkerProxy
from orc.shell.follower import numbered
from orc.shell.health import HealthChecker
from orc.shell.manager import Manager, Upkeep
from orc.shell.reaper import Reaper
from orc.shell.restarter import Restarter
from orc.shell.scheduler import Scheduler
from orc.shell.stats import capacity
from orc.shell.worker import Worker

log = logging.getLogger("orc")

MAILBOX = 1 << 16


@dataclass
class WorkerNode:
    info: NodeInfo
    port: int
    worker: ActorRef
    proxy: ActorRef
    docker: DockerDriver | None = None


@dataclass
class Cluster:
    """The refs a running single-process cluster is made of."""

    log: EventLog
    manager: ActorRef
    scheduler: ActorRef
    workers: list[WorkerNode] = field(default_factory=list)
    restarter: ActorRef | None = None
    health: ActorRef | None = None


def cluster_id(data_dir: Path) -> str:
    """This installation's ID, kept in the data dir: it scopes the Docker containers a worker
    may adopt, so two orc runs on one engine (say, two test sessions) never take each
    other's containers."""
    path = data_dir / "cluster-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.write_text(f"{uuid.uuid4()}\n")
        return path.read_text().strip()


def docker_driver(settings: Settings, node: str, limiter: trio.CapacityLimiter) -> DockerDriver:
    return DockerDriver(
        settings.data_dir / "docker" / node,
        node=node,
        cluster=cluster_id(settings.data_dir),
        stop_grace=settings.stop_grace,
        host_ip=settings.docker_host_ip,
        base_url=settings.docker_host,
        pull_timeout=settings.docker_pull_timeout,
        limiter=limiter,
    )


def supervisor(name: str) -> Supervisor:
    """Every orc process supervises its actors alike: one that crashes more than 5 times in
    10 s stops the process (cleanly), as docs/operations.md says."""
    return Supervisor(name, max_restarts=5, within=10.0)


def worker_drivers(
    settings: Settings, name: str, docker_limiter: trio.CapacityLimiter
) -> dict[str, Driver]:
    """The drivers of worker `name`; docker is used only while an engine answers."""
    return {
        "process": ProcessDriver(settings.data_dir / "tasks" / name, settings.stop_grace),
        "docker": docker_driver(settings, name, docker_limiter),
    }


def manager_http_app(
    cluster: Cluster,
    settings: Settings,
    workers: Mapping[str, ActorRef],
    monitor: ActorRef | None,
) -> QuartTrio:
    """The manager's whole HTTP API, in one process or on its own."""
    app = manager_app(cluster.manager, settings.max_body, workers)
    add_event_stream(app, cluster.log)
    add_manager_node_routes(app, cluster.manager, monitor)
    add_history_route(app, cluster.manager, Path(cluster.log.directory))
    require_token(app, settings.token)
    return app


def restart_settings(settings: Settings) -> RestartSettings:
    return RestartSettings(
        max_restarts=settings.restart_max,
        backoff=settings.restart_backoff,
        backoff_max=settings.restart_backoff_max,
        reset_after=settings.restart_reset,
        placement=settings.scheduler,
    )


def build(
    settings: Settings, sup: Supervisor, event_log: EventLog, docker_up: bool = False
) -> Cluster:
    """`docker_up`: whether an engine answered; workers advertise docker only then."""
    refs: dict[str, ActorRef] = {}
    proxies: dict[str, ActorRef] = {}
    upkeep = Upkeep(settings.digest_every, settings.snapshot_every, settings.retain_events)
    restarts = restart_settings(settings)
    manager = sup.add(
        "manager",
        lambda: Manager(
            event_log,
            refs["scheduler"],
            proxies,
            upkeep,
            restarts=restarts,
            restarter=refs["restarter"],
            health=refs["health"],
        ),
        mailbox_size=MAILBOX,
    )
    refs["restarter"] = sup.add(
        "restarter", numbered(lambda again: Restarter(lambda: manager, now, again))
    )
    refs["health"] = sup.add(
        "health",
        numbered(
            lambda again: HealthChecker(
                lambda: manager,
                now,
                settings.health_interval,
                settings.health_timeout,
                settings.health_failures,
                replaces_crashed=again,
            )
        ),
    )
    refs["scheduler"] = sup.add(
        "scheduler",
        numbered(lambda again: Scheduler(lambda: manager, now, settings.scheduler, again)),
        mailbox_size=MAILBOX,
    )
    if settings.task_retention:
        sup.add("reaper", lambda: Reaper(lambda: manager, now, settings.task_retention))
    cluster = Cluster(
        event_log, manager, refs["scheduler"], restarter=refs["restarter"], health=refs["health"]
    )
    docker_limiter = trio.CapacityLimiter(8)
    for i in range(settings.worker_count):
        name = f"worker-{i + 1}"
        port = settings.worker_port + i
        info = node_info(name, f"{settings.worker_host}:{port}", settings.data_dir, docker_up)
        drivers = worker_drivers(settings, name, docker_limiter)
        worker, proxy = _add_worker(sup, info, drivers, manager)
        proxies[name] = proxy
        cluster.workers.append(WorkerNode(info, port, worker, proxy, drivers["docker"]))  # type: ignore[arg-type]
    return cluster


def _add_worker(
    sup: Supervisor, info: NodeInfo, drivers: dict[str, Driver], manager: ActorRef
) -> tuple[ActorRef, ActorRef]:
    refs: dict[str, ActorRef] = {}
    refs["proxy"] = sup.add(
        f"{info.name}-proxy",
        lambda: LocalWorkerProxy(lambda: refs["worker"], lambda: manager),
        mailbox_size=MAILBOX,
    )
    refs["worker"] = sup.add(
        info.name,
        lambda: Worker(info, drivers, refs["proxy"], now),
        mailbox_size=MAILBOX,
    )
    return refs["worker"], refs["proxy"]


async def open_event_log(path: Path, record_type: object, segment_bytes: int) -> EventLog:
    """Open (or create) a log, saying so when a torn tail record was cut off."""
    event_log = await EventLog.open(path, record_type, segment_bytes=segment_bytes)
    if event_log.recovery is not None:
        r = event_log.recovery
        log.warning(
            "event log: cut a torn record of %d bytes at the tail of %s (offset %d);"
            " it was never acknowledged",
            r.dropped_bytes,
            r.path,
            r.offset,
        )
    return event_log


async def probe_docker(settings: Settings) -> bool:
    """Whether a Docker engine answers (a node advertises docker only then)."""
    probe = docker_driver(settings, "probe", trio.CapacityLimiter(1))
    docker_up = await probe.ping()
    if not docker_up:
        log.warning(
            "docker: no engine answers at %s; tasks with an Image wait until one does",
            settings.docker_host or "the default address (DOCKER_HOST or the local socket)",
        )
    return docker_up


async def run_cluster(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or until `stop` is set), then shut down in order."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    event_log = await open_event_log(settings.data_dir / "log", AnyEvent, settings.segment_bytes)
    sup = supervisor("orc")
    docker_up = await probe_docker(settings)
    cluster = build(settings, sup, event_log, docker_up)
    stop = stop if stop is not None else trio.Event()
    http_closed = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            nursery.start_soon(wait_for_signal, stop)
            for node in cluster.workers:
                await cluster.manager.ask(Join(node.info, now()), timeout=30)
                announce(f"Orc worker {node.info.name} drivers: {', '.join(node.info.drivers)}")
                nursery.start_soon(_rejoin_on_engine_change, cluster, node, settings.docker_ping)
            await _report_strays(cluster)
            async with trio.open_nursery() as servers:
                for node in cluster.workers:
                    app = worker_app(node.worker, settings.data_dir, settings.max_body)
                    require_token(app, settings.token)
                    await servers.start(
                        serve_app, app, settings.worker_host, node.port, http_closed.wait
                    )
                    announce(f"Starting Orc worker at {settings.worker_host}:{node.port}")
                workers = {node.info.name: node.proxy for node in cluster.workers}
                app = manager_http_app(cluster, settings, workers, None)
                await servers.start(
                    serve_app, app, settings.manager_host, settings.manager_port, http_closed.wait
                )
                announce(f"Starting Orc manager at {settings.manager_host}:{settings.manager_port}")
                await stop.wait()
                log.info("shutting down: stopping tasks")
                http_closed.set()
            await drain(cluster, settings)
            nursery.cancel_scope.cancel()
    finally:
        await event_log.aclose()
    log.info("orc stopped; event log closed at sequence %d", event_log.last_seq)


async def watch_engine(
    docker: DockerDriver,
    info: Callable[[], NodeInfo],
    changed: Callable[[NodeInfo], Awaitable[object]],
    interval: float,
) -> None:
    """Probe the Docker engine every `interval` s; when it goes or comes back, hand `changed`
    the node's new NodeInfo, so that docker tasks are placed there only while it answers."""
    while True:
        await trio.sleep(interval)
        up = await docker.ping()
        current = info()
        if up == ("docker" in current.drivers):
            continue
        drivers = tuple(d for d in current.drivers if d != "docker") + (("docker",) if up else ())
        state = "answers again" if up else "stopped answering"
        log.warning("worker %s: the Docker engine %s", current.name, state)
        log.warning("worker %s drivers: %s", current.name, ", ".join(drivers))
        await changed(msgspec.structs.replace(current, drivers=drivers))


async def _rejoin_on_engine_change(cluster: Cluster, node: WorkerNode, interval: float) -> None:
    assert node.docker is not None

    async def rejoin(info: NodeInfo) -> None:
        node.info = info
        await cluster.manager.ask(Join(info, now()), timeout=30)

    await watch_engine(node.docker, lambda: node.info, rejoin, interval)


def node_info(name: str, address: str, data_dir: Path, docker_up: bool) -> NodeInfo:
    """What a worker node offers: this machine's capacity, and docker while an engine answers."""
    cores, memory, disk = capacity(data_dir)
    drivers = ("process", "docker") if docker_up else ("process",)
    return NodeInfo(name, address, drivers, cores, memory, disk)


async def _report_strays(cluster: Cluster) -> None:
    """Containers (or processes) a worker adopted whose task the manager does not know are
    reported and left alone: orc did not start them in this installation's memory, so it does
    not kill them."""
    known = {task.id for task in await cluster.manager.ask(ListTasks(), timeout=30)}  # type: ignore[attr-defined]
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


async def drain(cluster: Cluster, settings: Settings) -> None:
    """Stop every task and make sure its last state is in the log before it closes."""
    timeout = settings.stop_grace + 10
    if cluster.restarter is not None:
        # restarts still waiting stay in the log and are armed again at the next start
        await ask_quietly(cluster.restarter, Hold(), timeout)
    async with trio.open_nursery() as nursery:
        for node in cluster.workers:
            nursery.start_soon(ask_quietly, node.worker, Shutdown(), timeout)
    for node in cluster.workers:
        await ask_quietly(node.proxy, Ping(), timeout)
    await ask_quietly(cluster.manager, Ping(), timeout)


async def ask_quietly(ref: ActorRef, message: object, timeout: float) -> None:
    try:
        await ref.ask(message, timeout=timeout)
    except Exception as exc:
        log.warning("shutdown: %s did not finish %s: %s", ref.name, type(message).__name__, exc)


async def wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return
