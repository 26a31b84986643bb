"""`orc manager`: the manager node in its own process, with workers in others; and the parts
every manager is built from (its actors and its HTTP app), which `orc` in one process uses too.

Each worker is reached through an `HttpWorkerProxy`, made when the worker first registers
(`POST /nodes`), when the log already knows it (at start), or when it is found at an address
of the static list ORC_WORKERS. A NodeMonitor keeps last-seen times and marks a node silent for
ORC_NODE_TTL down.

With etcd endpoints (`--etcd`, ORC_ETCD_ENDPOINTS) the manager is one of several highly
available ones, in orc/cmd/ha.py, built from the same parts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import msgspec
import trio
from quart_trio import QuartTrio

from actors import ActorRef, Supervisor
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
from orc.cmd.worker import advertised
from orc.config import Settings
from orc.core import decide
from orc.core.events import AnyEvent
from orc.core.messages import Hold, Ping, Reply
from orc.core.model import NodeInfo
from orc.core.restarts import RestartSettings
from orc.core.validation import Invalid
from orc.ha.election import Leader
from orc.ha.registry import LEADER, ClusterView, ManagerEntry
from orc.http.app import open_paths, require_token
from orc.http.cluster import ClusterSource, add_cluster_route
from orc.http.events import StreamedLog, add_event_stream
from orc.http.history import ReadLog, add_history_route
from orc.http.manager import manager_app
from orc.http.metrics import add_manager_metrics
from orc.http.nodes import add_manager_node_routes, decode_registration
from orc.nodes.remote import HttpWorkerProxy, auth_headers
from orc.replay.read import read
from orc.shell.follower import numbered
from orc.shell.health import HealthChecker
from orc.shell.jobtimer import JobTimer
from orc.shell.log import ManagerLog
from orc.shell.manager import Handoff, Manager, Upkeep
from orc.shell.meter import ManagerMeter
from orc.shell.monitor import NodeMonitor, Register
from orc.shell.reaper import Reaper
from orc.shell.restarter import Restarter
from orc.shell.scheduler import Scheduler
from orc.ui import add_dashboard

log = logging.getLogger("orc.manager")


# -- the parts of a manager -------------------------------------------------------------------


@dataclass
class ManagerActors:
    """The refs of a manager's actors. `proxies` maps each worker node to its proxy; it fills
    as nodes are added (in one process, at build; otherwise as they register)."""

    log: ManagerLog
    manager: ActorRef
    scheduler: ActorRef
    restarter: ActorRef
    health: ActorRef
    meter: ManagerMeter
    jobtimer: ActorRef | None = None
    proxies: dict[str, ActorRef] = field(default_factory=dict)


def restart_settings(settings: Settings) -> RestartSettings:
    return RestartSettings(
        max_restarts=settings.restart_max,
        backoff=settings.restart_backoff,
        backoff_max=settings.restart_backoff_max,
        reset_after=settings.restart_reset,
        placement=settings.scheduler,
    )


def build_manager(
    settings: Settings,
    sup: Supervisor,
    event_log: ManagerLog,
    meter: ManagerMeter | None = None,
    handoff: Handoff | None = None,
) -> ManagerActors:
    """The manager and the actors that follow its log (scheduler, restarter, health checker,
    reaper), under `sup`. A manager that takes over from a standby is given its `meter` (one
    for the process: its counts outlive each term) and its state (`handoff`)."""
    refs: dict[str, ActorRef] = {}
    proxies: dict[str, ActorRef] = {}
    upkeep = Upkeep(settings.digest_every, settings.snapshot_every, settings.retain_events)
    restarts = restart_settings(settings)
    if meter is None:
        meter = ManagerMeter(event_log)  # before anything is appended: it counts the appends
    else:
        meter.watch(event_log)
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
            limits=decide.Limits(settings.max_tasks, settings.max_pending),
            meter=meter,
            jobtimer=refs["jobtimer"],
            handoff=handoff,
        ),
        mailbox_size=MAILBOX,
    )
    refs["restarter"] = sup.add(
        "restarter", numbered(lambda again: Restarter(lambda: manager, now, again))
    )
    refs["jobtimer"] = sup.add(
        "jobtimer", numbered(lambda again: JobTimer(lambda: manager, now, again))
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
                meter=meter,
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
    return ManagerActors(
        event_log,
        manager,
        refs["scheduler"],
        refs["restarter"],
        refs["health"],
        meter,
        refs["jobtimer"],
        proxies,
    )


def manager_http_app(
    actors: ManagerActors,
    settings: Settings,
    workers: Mapping[str, ActorRef],
    monitor: ActorRef | None,
) -> QuartTrio:
    """The manager's whole HTTP API, in one process or on its own, with its file log."""
    log = actors.log
    app = manager_api(
        actors.manager,
        log,
        actors.meter,
        settings,
        workers,
        monitor,
        partial(read, Path(getattr(log, "directory", "."))),
        partial(single_cluster, settings, log, now()),
    )
    require_token(app, settings.token)
    return app


def manager_api(
    manager: ActorRef,
    log: StreamedLog,
    meter: ManagerMeter,
    settings: Settings,
    workers: Mapping[str, ActorRef],
    monitor: ActorRef | None,
    read_log: ReadLog,
    cluster: ClusterSource,
) -> QuartTrio:
    """The manager's routes, on whichever log (`read_log` reads it whole, for histories), and
    `GET /cluster` from `cluster`. The caller sets the token (`require_token`), last."""
    app = manager_app(manager, settings.max_body, workers)
    add_event_stream(app, log, max_streams=settings.max_streams)
    add_manager_node_routes(app, manager, monitor)
    add_history_route(app, manager, read_log)
    add_manager_metrics(app, meter)
    add_cluster_route(app, cluster)
    open_paths(app, add_dashboard(app))  # the page's files; its API calls carry the token
    return app


def manager_name(settings: Settings) -> str:
    """This manager's name among managers: ORC_MANAGER_NAME, or host:port."""
    return settings.manager_name or advertised(settings.manager_host, settings.manager_port)


def manager_url(settings: Settings) -> str:
    """Where other managers, workers and clients reach this manager's API."""
    return "http://" + advertised(settings.manager_host, settings.manager_port)


async def single_cluster(settings: Settings, log: ManagerLog, since: str) -> ClusterView:
    """`GET /cluster` of a single manager with its file log: itself, the leader, no etcd."""
    me = Leader(manager_name(settings), manager_url(settings), since)
    entry = ManagerEntry(me.name, me.address, LEADER, log.last_seq, now())
    return ClusterView(settings.cluster, me, [entry], None)


async def drain_manager(
    actors: ManagerActors,
    timeout: float,
    stop_workers: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Hold restarts and jobs first (they stay in the log and resume at the next start), so
    that tasks ended by the shutdown are neither restarted nor replaced; then `stop_workers`
    (in one process: stop every task and pass on its end); then let the manager log
    everything in its mailbox before the log closes."""
    await ask_quietly(actors.restarter, Hold(), timeout)
    if actors.jobtimer is not None:
        await ask_quietly(actors.jobtimer, Hold(), timeout)
    # and the reconciler: the tasks the shutdown ends are not replaced now (the next start's
    # reconcile pass does that)
    await ask_quietly(actors.manager, Hold(), timeout)
    if stop_workers is not None:
        await stop_workers()
    await ask_quietly(actors.manager, Ping(), timeout)


# -- `orc manager` ----------------------------------------------------------------------------


def build_node_manager(
    settings: Settings,
    sup: Supervisor,
    event_log: ManagerLog,
    meter: ManagerMeter | None = None,
    handoff: Handoff | None = None,
    leads: Callable[[], bool] | None = None,
) -> tuple[ManagerActors, ActorRef]:
    """`build_manager` with what a manager of separate worker processes adds: a NodeMonitor,
    and an `HttpWorkerProxy` for each worker as it registers (or as the log knows it, at
    start). Returns the actors and the monitor. `leads`: highly available managers' proxies
    send orders only while it holds (`Election.holds`)."""
    actors = build_manager(settings, sup, event_log, meter, handoff)
    monitor_ref: list[ActorRef] = []

    def make_proxy(info: NodeInfo) -> ActorRef:
        proxy = sup.add(
            f"{info.name}-proxy",
            lambda: HttpWorkerProxy(
                info.name,
                info.address,
                lambda: actors.manager,
                lambda: monitor_ref[0],
                settings.token,
                settings.node_ttl,
                settings.orders_max_body,
                leads,
            ),
            mailbox_size=MAILBOX,
        )
        actors.proxies[info.name] = proxy
        return proxy

    monitor = sup.add(
        "monitor",
        lambda: NodeMonitor(actors.manager, make_proxy, settings.node_ttl, now),
        mailbox_size=MAILBOX,
    )
    monitor_ref.append(monitor)
    return actors, monitor


async def run_manager(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or `stop`), then shut down in order. Tasks keep running on
    their workers, which keep their updates until a manager follows them again. With its log
    in a file: one of several managers on etcd is `orc.cmd.ha.run_ha_manager`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    event_log = await open_event_log(settings.data_dir / "log", AnyEvent, settings.segment_bytes)
    sup = supervisor("orc-manager")
    actors, monitor = build_node_manager(settings, sup, event_log)
    host, port = settings.manager_host, settings.manager_port

    async def start(nursery: trio.Nursery, serve: Serve) -> None:
        await serve(manager_http_app(actors, settings, actors.proxies, monitor), host, port)
        for address in settings.workers:
            nursery.start_soon(_static_worker, address, monitor, settings)
        announce(f"Starting Orc manager at {host}:{port}")

    async def drain() -> None:
        await drain_manager(actors, settings.stop_grace + 10)

    await run_process(Process("orc manager", event_log, sup, start, drain), stop)


async def _static_worker(address: str, monitor: ActorRef, settings: Settings) -> None:
    """A worker of ORC_WORKERS: ask it who it is until it answers, then register it. From then
    on its update stream is its heartbeat."""
    delay = 0.1
    said = ""
    async with httpx.AsyncClient(headers=auth_headers(settings.token), timeout=5) as client:
        while True:
            problem = ""
            try:
                r = await client.get(f"http://{address}/node")
                if r.status_code == 200:
                    info = decode_registration(r.content)
                    # Reach it where the list says, whatever it calls itself.
                    info = msgspec.structs.replace(info, address=address)
                    reply = await monitor.ask(Register(info), timeout=10)
                    assert isinstance(reply, Reply)
                    if reply.status < 400:
                        log.warning("static worker %s is node %s", address, info.name)
                        return
                    problem = reply.message
                else:
                    problem = f"{r.status_code} {r.text.strip()}"
            except (httpx.HTTPError, Invalid) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem != said:
                log.warning("static worker %s: %s; retrying", address, problem)
                said = problem
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)
