"""One process, a whole cluster: the manager, its scheduler and `worker_count` workers, each
with its HTTP server, under one supervisor.

Shutdown runs in order so nothing is lost: HTTP servers stop taking requests, workers stop
their tasks and report it, the manager logs those reports, then the log closes.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from actors import ActorRef, Supervisor
from eventlog import EventLog
from orc.clock import now
from orc.config import Settings
from orc.drivers.process import ProcessDriver
from orc.events import AnyEvent
from orc.http.common import serve_app
from orc.http.manager_api import manager_app
from orc.http.worker_api import worker_app
from orc.manager import Manager
from orc.messages import Join, Shutdown
from orc.model import NodeInfo
from orc.proxy import LocalWorkerProxy
from orc.scheduler import Scheduler
from orc.stats import capacity
from orc.worker import Ping, Worker

log = logging.getLogger("orc")

MAILBOX = 1 << 16


@dataclass
class WorkerNode:
    info: NodeInfo
    port: int
    worker: ActorRef
    proxy: ActorRef


@dataclass
class Cluster:
    """The refs a running single-process cluster is made of."""

    log: EventLog
    manager: ActorRef
    scheduler: ActorRef
    workers: list[WorkerNode] = field(default_factory=list)


def build(settings: Settings, sup: Supervisor, event_log: EventLog) -> Cluster:
    refs: dict[str, ActorRef] = {}
    proxies: dict[str, ActorRef] = {}
    manager = sup.add(
        "manager",
        lambda: Manager(event_log, refs["scheduler"], proxies),
        mailbox_size=MAILBOX,
    )
    refs["scheduler"] = sup.add(
        "scheduler",
        lambda: Scheduler(lambda: manager, now, settings.scheduler),
        mailbox_size=MAILBOX,
    )
    cluster = Cluster(event_log, manager, refs["scheduler"])
    cores, memory, disk = capacity(settings.data_dir)
    for i in range(settings.worker_count):
        name = f"worker-{i + 1}"
        port = settings.worker_port + i
        info = NodeInfo(
            name=name,
            address=f"{settings.worker_host}:{port}",
            drivers=("process",),
            cores=cores,
            memory=memory,
            disk=disk,
        )
        driver = ProcessDriver(settings.data_dir / "tasks" / name, settings.stop_grace)
        worker, proxy = _add_worker(sup, info, driver, manager)
        proxies[name] = proxy
        cluster.workers.append(WorkerNode(info, port, worker, proxy))
    return cluster


def _add_worker(
    sup: Supervisor, info: NodeInfo, driver: ProcessDriver, manager: ActorRef
) -> tuple[ActorRef, ActorRef]:
    refs: dict[str, ActorRef] = {}
    refs["proxy"] = sup.add(
        f"{info.name}-proxy",
        lambda: LocalWorkerProxy(lambda: refs["worker"], lambda: manager),
        mailbox_size=MAILBOX,
    )
    refs["worker"] = sup.add(
        info.name,
        lambda: Worker(info, {"process": driver}, refs["proxy"], now),
        mailbox_size=MAILBOX,
    )
    return refs["worker"], refs["proxy"]


async def run_cluster(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or until `stop` is set), then shut down in order."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    event_log = await EventLog.open(
        settings.data_dir / "log", AnyEvent, segment_bytes=settings.segment_bytes
    )
    if event_log.recovery is not None:
        r = event_log.recovery
        log.warning(
            "event log: cut a torn record of %d bytes at the tail of %s (offset %d);"
            " it was never acknowledged",
            r.dropped_bytes,
            r.path,
            r.offset,
        )
    sup = Supervisor("orc", max_restarts=5, within=10.0)
    cluster = build(settings, sup, event_log)
    stop = stop if stop is not None else trio.Event()
    http_closed = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            nursery.start_soon(_wait_for_signal, stop)
            for node in cluster.workers:
                await cluster.manager.ask(Join(node.info, now()), timeout=30)
            async with trio.open_nursery() as servers:
                for node in cluster.workers:
                    app = worker_app(node.worker, settings.data_dir, settings.max_body)
                    await servers.start(
                        serve_app, app, settings.worker_host, node.port, http_closed.wait
                    )
                    announce(f"Starting Orc worker at {settings.worker_host}:{node.port}")
                app = manager_app(cluster.manager, settings.max_body)
                await servers.start(
                    serve_app, app, settings.manager_host, settings.manager_port, http_closed.wait
                )
                announce(f"Starting Orc manager at {settings.manager_host}:{settings.manager_port}")
                await stop.wait()
                log.info("shutting down: stopping tasks")
                http_closed.set()
            await _drain(cluster, settings)
            nursery.cancel_scope.cancel()
    finally:
        await event_log.aclose()
    log.info("orc stopped; event log closed at sequence %d", event_log.last_seq)


async def _drain(cluster: Cluster, settings: Settings) -> None:
    """Stop every task and make sure its last state is in the log before it closes."""
    timeout = settings.stop_grace + 10
    async with trio.open_nursery() as nursery:
        for node in cluster.workers:
            nursery.start_soon(_ask_quietly, node.worker, Shutdown(), timeout)
    for node in cluster.workers:
        await _ask_quietly(node.proxy, Ping(), timeout)
    await _ask_quietly(cluster.manager, Ping(), timeout)


async def _ask_quietly(ref: ActorRef, message: object, timeout: float) -> None:
    try:
        await ref.ask(message, timeout=timeout)
    except Exception as exc:
        log.warning("shutdown: %s did not finish %s: %s", ref.name, type(message).__name__, exc)


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return
