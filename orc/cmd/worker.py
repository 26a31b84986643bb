"""`orc worker`: one worker node in its own process, and the parts every worker node is built
from (its drivers, what it offers, its watch of the Docker engine), which `orc` in one process
uses too.

The Worker actor reports to a Journal (orc/shell/journal.py), which makes each update durable in
the worker's own log before the manager can see it on `GET /events`. With `--manager URL` the
worker registers there at start and every ORC_NODE_TTL/3 (its heartbeat); without it, it waits
for a manager that lists it in ORC_WORKERS. With several managers (`--manager URL1,URL2,...`,
highly available managers on etcd), it registers with the leader: the manager that last
accepted, else the leader a standby names (307), else the next URL (docs/ha.md).
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
import trio
from quart_trio import QuartTrio

from actors import ActorRef
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
from orc.config import Settings
from orc.core.events import WorkerUpdate
from orc.core.messages import Ping, Shutdown
from orc.core.model import NodeInfo
from orc.drivers.base import Driver
from orc.drivers.docker import DockerDriver
from orc.drivers.process import ProcessDriver
from orc.http.app import require_token
from orc.http.events import add_event_stream
from orc.http.metrics import add_log_metrics
from orc.http.nodes import add_worker_node_routes
from orc.http.wire import REDIRECTS, manager_urls
from orc.http.worker import worker_app
from orc.nodes.remote import auth_headers
from orc.shell.journal import Journal
from orc.shell.meter import LogMeter
from orc.shell.stats import capacity
from orc.shell.worker import Worker

log = logging.getLogger("orc.worker")


# -- the parts of a worker node ---------------------------------------------------------------


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


def worker_drivers(
    settings: Settings, name: str, docker_limiter: trio.CapacityLimiter
) -> tuple[dict[str, Driver], DockerDriver]:
    """The drivers of worker `name` (docker is used only while an engine answers), and its
    docker driver again, typed, for the engine watch."""
    docker = docker_driver(settings, name, docker_limiter)
    drivers: dict[str, Driver] = {
        "process": ProcessDriver(settings.data_dir / "tasks" / name, settings.stop_grace),
        "docker": docker,
    }
    return drivers, docker


def node_info(
    name: str,
    address: str,
    data_dir: Path,
    docker_up: bool,
    attrs: tuple[tuple[str, str], ...] = (),
) -> NodeInfo:
    """What a worker node offers: this machine's capacity, docker while an engine answers, and
    the attributes the operator gave it (ORC_WORKER_ATTRS, `--attr`; None when there are none,
    as a node of an older orc registers)."""
    cores, memory, disk = capacity(data_dir)
    drivers = ("process", "docker") if docker_up else ("process",)
    return NodeInfo(name, address, drivers, cores, memory, disk, dict(attrs) or None)


def say_attrs(info: NodeInfo) -> str:
    """`rack=a,zone=z1`, as ORC_WORKER_ATTRS takes them."""
    return ",".join(f"{k}={v}" for k, v in (info.attrs or {}).items())


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


# -- `orc worker` -----------------------------------------------------------------------------


def worker_node_app(
    worker: ActorRef, settings: Settings, journal: LogMeter, info: Callable[[], NodeInfo]
) -> QuartTrio:
    """The whole HTTP API of an `orc worker`: a worker's routes, and its update stream (from
    its journal's log) and `GET /node` for its manager."""
    app = worker_app(worker, settings.data_dir, settings.max_body, settings.orders_max_body)
    every = settings.node_ttl / 3
    add_event_stream(app, journal.log, heartbeat=every, max_streams=settings.max_streams)
    add_worker_node_routes(app, info)
    add_log_metrics(app, journal)
    require_token(app, settings.token)
    return app


def worker_name(settings: Settings, port: int) -> str:
    return settings.worker_name or f"worker-{port}"


def advertised(host: str, port: int) -> str:
    """The address the manager should call: the bind host, or this machine's name when it
    binds every interface."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"{host}:{port}"


async def run_worker(
    settings: Settings,
    manager_url: str = "",
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or `stop`); then stop the tasks and log their ends."""
    host, port = settings.worker_host, settings.worker_port
    name = worker_name(settings, port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    updates_log = await open_event_log(
        settings.data_dir / "worker-log", WorkerUpdate, settings.segment_bytes
    )
    log_meter = LogMeter.watch(updates_log)  # its appends and fsyncs, for /metrics
    docker_up = await probe_docker(settings)
    info = node_info(
        name, advertised(host, port), settings.data_dir, docker_up, settings.worker_attrs
    )
    current = [info]

    async def advertise(changed: NodeInfo) -> None:
        current[0] = changed  # the next registration heartbeat carries it

    drivers, docker = worker_drivers(settings, name, trio.CapacityLimiter(8))
    sup = supervisor(f"orc-worker-{name}")
    journal = sup.add("journal", lambda: Journal(updates_log), mailbox_size=MAILBOX)
    worker = sup.add(name, lambda: Worker(info, drivers, journal, now), mailbox_size=MAILBOX)

    async def start(nursery: trio.Nursery, serve: Serve) -> None:
        app = worker_node_app(worker, settings, log_meter, lambda: current[0])
        await serve(app, host, port)
        announce(f"Orc worker {name} drivers: {', '.join(info.drivers)}")
        if info.attrs:
            announce(f"Orc worker {name} attributes: {say_attrs(info)}")
        announce(f"Starting Orc worker {name} at {host}:{port}")
        if urls := manager_urls(manager_url):
            nursery.start_soon(_register, settings, urls, current)
        nursery.start_soon(
            watch_engine, docker, lambda: current[0], advertise, settings.docker_ping
        )

    async def drain() -> None:
        await ask_quietly(worker, Shutdown(), settings.stop_grace + 10)
        await ask_quietly(journal, Ping(), 10)
        # A moment for the manager's stream to take the last updates, then close.
        await trio.sleep(min(1.0, settings.node_ttl / 3))
        await updates_log.aclose()

    process = Process(f"orc worker {name}", updates_log, sup, start, drain, http_first=False)
    await run_process(process, stop)


FIRST_BACKOFF = 0.05  # seconds before trying the managers again when none accepted


class Managers:
    """Where a worker's registrations go: to the manager that last accepted one; when it cannot
    be reached, has no leader (503) or names the leader (307), to the leader it names (the
    same POST, body and all, as a 307 asks), else to the next URL of the list: once round the
    list in each round."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self.current = urls[0]  # the manager that last accepted (a leader may be off the list)

    def order(self) -> list[str]:
        """The current manager first, then the list from the one after it, round to it."""
        if self.current not in self.urls:
            return [self.current, *self.urls]
        i = self.urls.index(self.current)
        return [*self.urls[i:], *self.urls[:i]]

    async def post(self, client: httpx.AsyncClient, path: str, body: bytes) -> tuple[str, str]:
        """POST `body` to `path` until a manager accepts it: (that manager's URL, or "" when
        none did; what the managers tried before said). A manager that refuses it (any other
        status) ends the round: the leader said no, and another would send it back there."""
        problems: list[str] = []
        for base in self.order():
            url = base + path
            for _ in range(REDIRECTS + 1):
                there = url.partition("?")[0].removesuffix(path)  # the manager asked now
                where = base if there == base else f"{base} (307 to {there})"
                try:
                    r = await client.post(url, content=body)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    problems.append(f"{where}: {_error(exc)}")
                    break
                if r.status_code == 200:
                    self.current = there
                    return there, "; ".join(problems)
                location = r.headers.get("location")
                if r.status_code in (307, 308) and location:
                    # By hand: httpx would drop the token on the way to another address.
                    try:
                        url = str(r.url.join(location))
                        continue
                    except httpx.InvalidURL:
                        pass
                problems.append(f"{where}: {r.status_code} {_message(r)}")
                if r.status_code != 503:
                    return "", "; ".join(problems)
                break
            else:
                problems.append(f"{base}: more than {REDIRECTS} redirects")
        return "", "; ".join(problems)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["message"])
    except (ValueError, KeyError, TypeError):
        return r.text.strip() or r.reason_phrase


async def _register(settings: Settings, urls: tuple[str, ...], current: list[NodeInfo]) -> None:
    """POST the NodeInfo now and every TTL/3 (registration and heartbeat) to the manager that
    last accepted it, or to the one that does (`Managers`). Never gives up: when none accepts,
    it tries again after a backoff that grows to TTL/3. It logs each change: a problem, and
    the manager (the leader) it registered with."""
    every = settings.node_ttl / 3
    managers = Managers(urls)
    registered_with = last_problem = ""
    backoff = FIRST_BACKOFF
    timeout = httpx.Timeout(every, connect=min(every, 1.0))
    async with httpx.AsyncClient(headers=auth_headers(settings.token), timeout=timeout) as client:
        while True:
            accepted, problem = await managers.post(
                client, "/nodes", msgspec.json.encode(current[0])
            )
            if accepted:
                if accepted != registered_with:
                    after = f" (after {problem})" if problem else ""
                    log.warning(
                        "registered with manager %s as %s%s", accepted, current[0].name, after
                    )
                registered_with, last_problem, backoff = accepted, "", FIRST_BACKOFF
                await trio.sleep(every)
                continue
            if problem != last_problem:
                log.warning("registering with %s; retrying", problem)
                last_problem = problem
            registered_with = ""
            await trio.sleep(backoff)
            backoff = min(2 * backoff, every)
