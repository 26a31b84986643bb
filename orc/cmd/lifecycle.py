"""The one lifecycle of every orc process: `orc` (everything in one process), `orc manager` and
`orc worker` differ only in what they build and in how they drain.

    open the log -> build actors under a supervisor -> start them -> start HTTP servers
    -> run until SIGINT/SIGTERM (or `stop`) -> drain -> close HTTP -> close the log

Draining is where nothing may be lost: a manager stops taking requests first and then logs its
workers' last reports; a worker stops its tasks and journals their ends first, and closes its
HTTP server last, so the manager's stream can still take those ends.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from quart_trio import QuartTrio

from actors import ActorRef, Supervisor
from eventlog import EventLog
from orc.http.app import serve_app
from orc.shell.recovery import open_log

log = logging.getLogger("orc")

# Mailboxes of the busy actors (manager, scheduler, workers, proxies): a burst of submissions
# waits here rather than being refused.
MAILBOX = 1 << 16

# `serve(app, host, port)` starts an HTTP server that runs until the process closes HTTP.
Serve = Callable[[QuartTrio, str, int], Awaitable[None]]


def supervisor(name: str) -> Supervisor:
    """Every orc process supervises its actors alike: one that crashes more than 5 times in
    10 s stops the process (cleanly), as docs/operations.md says."""
    return Supervisor(name, max_restarts=5, within=10.0)


async def open_event_log(path: Path, record_type: object, segment_bytes: int) -> EventLog:
    """Open (or create) a log, saying so when a torn tail record was cut off."""
    event_log = await open_log(path, record_type, segment_bytes)
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


@dataclass
class Process:
    """What one orc process is made of, for `run_process`.

    `start` runs once the supervisor runs: it tells actors what they need to know, starts the
    HTTP servers through `serve` and background jobs in the nursery, and announces the
    process's start lines. `drain` runs after a stop was asked for. With `http_first`, HTTP
    closes before `drain` (a manager: no new requests while it logs the last reports);
    otherwise after it (a worker: its update stream must stay up while its tasks end).
    """

    name: str
    log: EventLog
    sup: Supervisor
    start: Callable[[trio.Nursery, Serve], Awaitable[None]]
    drain: Callable[[], Awaitable[None]]
    http_first: bool = True


async def run_process(process: Process, stop: trio.Event | None = None) -> None:
    """Run until SIGINT or SIGTERM (or until `stop` is set), then shut down in order."""
    stop = stop if stop is not None else trio.Event()
    http_closed = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(process.sup.run)
            nursery.start_soon(wait_for_signal, stop)
            async with trio.open_nursery() as servers:

                async def serve(app: QuartTrio, host: str, port: int) -> None:
                    await servers.start(serve_app, app, host, port, http_closed.wait)

                await process.start(nursery, serve)
                await stop.wait()
                log.info("shutting down: stopping tasks")
                if process.http_first:
                    http_closed.set()
                else:
                    await process.drain()
                    http_closed.set()
                    await trio.sleep(0)
                    servers.cancel_scope.cancel()  # no grace: what had to be sent is sent
            if process.http_first:
                await process.drain()
            nursery.cancel_scope.cancel()
    finally:
        await process.log.aclose()
    log.info("%s stopped; event log closed at sequence %d", process.name, process.log.last_seq)


async def ask_quietly(ref: ActorRef, message: object, timeout: float) -> None:
    """Ask during shutdown: a failure is logged, never raised, so the rest still drains."""
    try:
        await ref.ask(message, timeout=timeout)
    except Exception as exc:
        log.warning("shutdown: %s did not finish %s: %s", ref.name, type(message).__name__, exc)


async def wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return
