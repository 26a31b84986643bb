"""`orc worker`: one worker node in its own process.

The Worker actor reports to a Journal, which appends each update to the worker's own durable
log (`<data dir>/worker-log`) before anything can see it. The worker's HTTP app serves that log
as `GET /events`, which the manager's proxy follows from the last seq it applied: so an update
survives a lost connection, a restarted manager and a restarted worker, and is applied once.
With `--manager URL` the worker registers there at start and every ORC_NODE_TTL/3 (its
heartbeat); without it, it waits for a manager that lists it in ORC_WORKERS.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import httpx
import msgspec
import trio

from actors import Actor, Mailbox
from eventlog import EventLog, LogWriteError
from orc.clock import now
from orc.cmd.cluster import (
    MAILBOX,
    ask_quietly,
    node_info,
    open_event_log,
    probe_docker,
    supervisor,
    wait_for_signal,
    watch_engine,
    worker_drivers,
)
from orc.config import Settings
from orc.core.events import WORKER_UPDATES, WorkerUpdate
from orc.core.messages import Ping, Shutdown
from orc.core.model import NodeInfo
from orc.http.app import require_token, serve_app
from orc.http.events import add_event_stream
from orc.http.nodes import add_worker_node_routes
from orc.http.worker import worker_app
from orc.nodes.remote import auth_headers
from orc.shell.worker import Worker

log = logging.getLogger("orc.worker")

BATCH = 512
RETRY_DELAY = 0.5


class Journal(Actor):
    """Appends the worker's updates to its log, many per fsync; an update is answered (and
    streamed) only once it is durable. A write that fails is retried until it succeeds."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def run(self, mailbox: Mailbox) -> None:
        while True:
            batch = [await mailbox.receive(), *mailbox.receive_nowait_many(BATCH)]
            updates = [env.message for env in batch if isinstance(env.message, WORKER_UPDATES)]
            while updates:
                try:
                    await self.log.append_batch(updates)
                    break
                except LogWriteError as exc:
                    log.error("worker log: %s; retrying in %g s", exc, RETRY_DELAY)
                    await trio.sleep(RETRY_DELAY)
            for env in batch:
                env.reply(None)


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
    docker_up = await probe_docker(settings)
    info = node_info(name, advertised(host, port), settings.data_dir, docker_up)
    current = [info]

    async def advertise(changed: NodeInfo) -> None:
        current[0] = changed  # the next registration heartbeat carries it

    drivers = worker_drivers(settings, name, trio.CapacityLimiter(8))
    sup = supervisor(f"orc-worker-{name}")
    journal = sup.add("journal", lambda: Journal(updates_log), mailbox_size=MAILBOX)
    worker = sup.add(name, lambda: Worker(info, drivers, journal, now), mailbox_size=MAILBOX)
    stop = stop if stop is not None else trio.Event()
    http_closed = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            nursery.start_soon(wait_for_signal, stop)
            app = worker_app(worker, settings.data_dir, settings.max_body)
            add_event_stream(app, updates_log, heartbeat=settings.node_ttl / 3)
            add_worker_node_routes(app, worker, lambda: current[0])
            require_token(app, settings.token)
            await nursery.start(serve_app, app, host, port, http_closed.wait)
            announce(f"Orc worker {name} drivers: {', '.join(info.drivers)}")
            announce(f"Starting Orc worker {name} at {host}:{port}")
            if manager_url:
                nursery.start_soon(_register, settings, manager_url.rstrip("/"), current)
            nursery.start_soon(
                watch_engine,
                drivers["docker"],  # type: ignore[arg-type]
                lambda: current[0],
                advertise,
                settings.docker_ping,
            )
            await stop.wait()
            log.info("shutting down: stopping tasks")
            await ask_quietly(worker, Shutdown(), settings.stop_grace + 10)
            await ask_quietly(journal, Ping(), 10)
            # A moment for the manager's stream to take the last updates, then close.
            await trio.sleep(min(1.0, settings.node_ttl / 3))
            await updates_log.aclose()
            http_closed.set()
            await trio.sleep(0)
            nursery.cancel_scope.cancel()
    finally:
        await updates_log.aclose()
    log.info("orc worker %s stopped; its log closed at sequence %d", name, updates_log.last_seq)


async def _register(settings: Settings, url: str, current: list[NodeInfo]) -> None:
    """POST the NodeInfo to the manager now and every TTL/3: registration and heartbeat."""
    every = settings.node_ttl / 3
    last_problem = ""
    async with httpx.AsyncClient(headers=auth_headers(settings.token), timeout=every) as client:
        while True:
            problem = ""
            try:
                r = await client.post(f"{url}/nodes", content=msgspec.json.encode(current[0]))
                if r.status_code != 200:
                    problem = f"{r.status_code} {r.text.strip()}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem != last_problem:
                if problem:
                    log.warning("registering with %s: %s; retrying", url, problem)
                else:
                    log.warning("registered with %s as %s", url, current[0].name)
                last_problem = problem
            await trio.sleep(every)
