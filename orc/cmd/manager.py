"""`orc manager`: the manager node in its own process, with workers in others.

The same manager, scheduler and restart actors as `orc` runs in one process (`orc.cmd.cluster.build`
with no local workers); each worker is reached through an `HttpWorkerProxy`, made when the
worker first registers (`POST /nodes`), when the log already knows it (at start), or when it is
found at an address of the static list ORC_WORKERS. A NodeMonitor keeps last-seen times and
marks a node silent for ORC_NODE_TTL down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import msgspec
import trio

from actors import ActorRef
from orc.clock import now
from orc.cmd.cluster import (
    MAILBOX,
    build,
    drain,
    manager_http_app,
    open_event_log,
    supervisor,
    wait_for_signal,
)
from orc.config import Settings
from orc.core.events import AnyEvent
from orc.core.messages import Reply
from orc.core.model import NodeInfo
from orc.core.validation import Invalid
from orc.http.app import serve_app
from orc.http.nodes import decode_registration
from orc.nodes.remote import HttpWorkerProxy, auth_headers
from orc.shell.monitor import NodeMonitor, Register

log = logging.getLogger("orc.manager")


async def run_manager(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or `stop`), then shut down in order. Tasks keep running on
    their workers, which keep their updates until a manager follows them again."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    event_log = await open_event_log(settings.data_dir / "log", AnyEvent, settings.segment_bytes)
    sup = supervisor("orc-manager")
    cluster = build(msgspec.structs.replace(settings, worker_count=0), sup, event_log)
    proxies: dict[str, ActorRef] = {}  # for what only a worker has (a task's logs)
    monitor_ref: list[ActorRef] = []

    def make_proxy(info: NodeInfo) -> ActorRef:
        proxy = sup.add(
            f"{info.name}-proxy",
            lambda: HttpWorkerProxy(
                info.name,
                info.address,
                lambda: cluster.manager,
                lambda: monitor_ref[0],
                settings.token,
                settings.node_ttl,
            ),
            mailbox_size=MAILBOX,
        )
        proxies[info.name] = proxy
        return proxy

    monitor = sup.add(
        "monitor",
        lambda: NodeMonitor(cluster.manager, make_proxy, settings.node_ttl, now),
        mailbox_size=MAILBOX,
    )
    monitor_ref.append(monitor)
    stop = stop if stop is not None else trio.Event()
    http_closed = trio.Event()
    host, port = settings.manager_host, settings.manager_port
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            nursery.start_soon(wait_for_signal, stop)
            app = manager_http_app(cluster, settings, proxies, monitor)
            await nursery.start(serve_app, app, host, port, http_closed.wait)
            for address in settings.workers:
                nursery.start_soon(_static_worker, address, monitor, settings)
            announce(f"Starting Orc manager at {host}:{port}")
            await stop.wait()
            log.info("shutting down")
            http_closed.set()
            await drain(cluster, settings)
            nursery.cancel_scope.cancel()
    finally:
        await event_log.aclose()
    log.info("orc manager stopped; event log closed at sequence %d", event_log.last_seq)


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
