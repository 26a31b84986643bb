"""`orc manager --etcd URL,...`: one of several highly available managers (docs/ha.md).

One process holds an HTTP server, this manager's entry in the cluster's list of managers, and
a loop of terms. Each term:

1. **Stands by.** It opens the log in etcd read-only and keeps a `Standby` on it: the leader's
   state, read from the newest snapshot and the records after it, then kept current with each
   record the leader writes (`EtcdLog.track`). Then it campaigns (`Election`).
2. **Leads, once it wins.** The log is promoted (each write from then on is fenced on the
   leader key), the standby's state is handed over to a Manager built as `orc manager` builds
   one (`build_node_manager`: scheduler, restarter, health checker, reaper, job timer, node
   monitor), which reads only the records the standby had not applied yet: a failover costs
   the lease's TTL and well under a second more. Its NodeMonitor gives every node the log
   knows a full ORC_NODE_TTL from now to be heard from, and a proxy at once, which reconciles
   with the worker: the tasks that run are adopted again, never restarted.
3. **Steps down** when the election says the lead may be lost, or when etcd refused a write
   (`EtcdLog.refused`: the fence no longer holds, or a write's outcome is unknown): the
   leader's actors are cancelled at once, without a drain, and the tasks on the workers are
   left running (they belong to the cluster, not to this manager). The log refuses appends
   from the moment the election says so, and etcd refuses those of a manager that did not
   notice; the next term starts again as a standby, from etcd.

SIGTERM (or SIGINT): a leader stops taking requests, holds restarts and jobs and lets its
manager log what it has (`drain_manager`, without stopping any task), then resigns, so that a
standby takes over at once instead of after the lease's TTL; a standby just leaves.

The HTTP server outlives the terms: it serves from whichever actors play the part now
(`Front`). Reads are answered by the leader or a standby alike (a standby's answers are late
by the moment a record takes to reach it); writes, and a task's logs (which only the leader's
proxies reach), are the leader's alone: a standby answers `307 Temporary Redirect` with
`Location` set to the same path and query on the leader, and `{"message", "Leader"}`, or
`503` with `Retry-After: 1` while no manager leads. A redirect rather than a proxy: the
request's data travels once, to the one manager that can act on it, and a standby holds no
connection open on behalf of a client; httpx (`follow_redirects=True`), browsers and `curl -L`
follow a 307 with the same method and body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from functools import partial
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors import ActorCrashed, ActorRef, ActorStopped, Supervisor
from eventlog import LogWriteError
from orc.clock import now
from orc.cmd.lifecycle import MAILBOX, supervisor, wait_for_signal
from orc.cmd.manager import (
    ManagerActors,
    _static_worker,
    build_node_manager,
    drain_manager,
    manager_api,
    manager_name,
    manager_url,
)
from orc.config import Settings
from orc.core.messages import Ping
from orc.ha.election import Election, Leader
from orc.ha.etcd import EtcdClient, EtcdError
from orc.ha.log import EtcdLog
from orc.ha.registry import LEADER, STANDBY, ClusterView, ManagerEntry, Registration, cluster_view
from orc.http.app import error, json_response, require_token, serve_app
from orc.http.wire import Standby as StandbyAnswer
from orc.http.wire import leader_only
from orc.replay.read import read_etcd
from orc.shell.manager import Handoff
from orc.shell.meter import ManagerMeter
from orc.shell.standby import Standby

log = logging.getLogger("orc.manager")

STARTING = "starting"  # between terms, or won and not leading yet
_RETRY_FIRST, _RETRY_MAX = 0.1, 2.0  # seconds between tries to reach etcd
_RECOVERY = 3600.0  # seconds a standby's first read of the log may take, at most


class Relay(ActorRef[object]):
    """A ref to whichever actor plays a part now: the term's Standby or the leader's Manager
    (or its NodeMonitor). While none does, it is `stopped`, and an ask raises ActorStopped,
    which the HTTP app answers 503 with Retry-After."""

    __slots__ = ("_target",)

    def __init__(self, name: str) -> None:  # no mailbox of its own: it sends to another's
        self.name = name
        self._target: ActorRef[Any] | None = None

    def point(self, target: ActorRef[Any] | None) -> None:
        self._target = target

    @property
    def stopped(self) -> bool:
        return self._target is None or self._target.stopped

    def _ref(self) -> ActorRef[Any]:
        if self._target is None:
            raise ActorStopped(f"no {self.name} now: this manager is changing roles")
        return self._target

    async def tell(self, message: object) -> None:
        await self._ref().tell(message)

    def tell_nowait(self, message: object) -> None:
        self._ref().tell_nowait(message)

    async def ask(self, message: object, timeout: float = 5.0) -> object:
        return await self._ref().ask(message, timeout)


class Proxies(Mapping[str, ActorRef[Any]]):
    """The leader's worker proxies (none on a standby), for the routes that reach a worker."""

    def __init__(self) -> None:
        self.current: Mapping[str, ActorRef[Any]] = {}

    def __getitem__(self, node: str) -> ActorRef[Any]:
        return self.current[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current)


class CurrentLog:
    """The log of the term now, for `GET /events` and the managers' list. A stream follows the
    log it began on, and ends when its term does: its client resumes with `after=`."""

    def __init__(self) -> None:
        self.log: EtcdLog | None = None

    @property
    def first_seq(self) -> int:
        return self.log.first_seq if self.log is not None else 1

    @property
    def last_seq(self) -> int:
        return self.log.last_seq if self.log is not None else 0

    def follow(
        self, from_seq: int = 1, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Any] | None]:
        if self.log is None:
            raise ActorStopped("no event log now: this manager is changing roles")
        return self.log.follow(from_seq, heartbeat)


class Front:
    """What the HTTP app serves from, switched as this manager's role changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.role = STARTING
        self.manager = Relay("manager")
        self.monitor = Relay("monitor")
        self.proxies = Proxies()
        self.log = CurrentLog()
        self.election: Election | None = None

    @property
    def leads(self) -> bool:
        return self.role == LEADER

    def leader(self) -> Leader | None:
        """Who leads, as this manager's election last saw it."""
        return self.election.leader() if self.election is not None else None

    def switch(
        self,
        role: str,
        manager: ActorRef[Any] | None,
        monitor: ActorRef[Any] | None = None,
        proxies: Mapping[str, ActorRef[Any]] | None = None,
    ) -> None:
        self.role = role
        self.manager.point(manager)
        self.monitor.point(monitor)
        self.proxies.current = proxies if proxies is not None else {}


def add_leader_redirect(app: QuartTrio, front: Front) -> None:
    """On a standby, send what only the leader can do to the leader (`307`), or say that no
    manager leads now (`503`, Retry-After: 1). After the token check (registered before)."""

    @app.before_request
    async def to_the_leader() -> Response | None:
        if front.leads or not leader_only(request.method, request.path):
            return None
        leader = front.leader()
        if leader is None or leader.name == front.name or not leader.address:
            response = error(
                503,
                f"this manager ({front.name}) does not lead, and no other manager leads now"
                " (an election is under way): retry shortly",
            )
            response.headers["Retry-After"] = "1"
            return response
        query = request.query_string.decode()
        response = json_response(
            StandbyAnswer(
                f"this manager ({front.name}) is a standby; the leader is {leader.name} at"
                f" {leader.address}",
                leader.address,
            ),
            307,
        )
        response.headers["Location"] = (
            leader.address.rstrip("/") + request.path + (f"?{query}" if query else "")
        )
        return response


class HaManager:
    """One highly available manager: its terms as standby and leader (see the module's doc)."""

    def __init__(
        self, settings: Settings, client: EtcdClient, announce: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.client = client
        self.announce = announce
        self.name = manager_name(settings)
        self.address = manager_url(settings)
        self.front = Front(self.name)
        self.registration = Registration(
            client,
            settings.cluster,
            self._entry,
            settings.lease_ttl,
            min(2.0, settings.lease_ttl / 2),
        )
        self.actors: ManagerActors | None = None  # the leader's, while it leads
        self.stopping = False
        self._terms = trio.CancelScope()

    def _entry(self) -> ManagerEntry:
        front = self.front
        return ManagerEntry(self.name, self.address, front.role, front.log.last_seq, now())

    async def run(self, stop: trio.Event) -> None:
        settings = self.settings
        first = await self._open_log(stop)
        if first is None:
            return
        meter = ManagerMeter(first)  # one for the process: the terms share its counts
        app = self._app(meter)
        http_closed = trio.Event()
        host, port = settings.manager_host, settings.manager_port
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_app, app, host, port, http_closed.wait)
            nursery.start_soon(self.registration.run)
            nursery.start_soon(self._stop_on, stop, http_closed)
            self.announce(f"Starting Orc manager at {host}:{port}")
            self.announce(
                f"Orc manager {self.name} in cluster {settings.cluster}, etcd"
                f" {','.join(self.client.endpoints)}"
            )
            event_log: EtcdLog | None = first
            with self._terms:
                while event_log is not None:
                    await self._term(event_log, meter)
                    event_log = await self._open_log(stop)
            http_closed.set()
            nursery.cancel_scope.cancel()

    def _app(self, meter: ManagerMeter) -> QuartTrio:
        settings, front = self.settings, self.front

        async def view() -> ClusterView:
            return await cluster_view(
                self.client, settings.cluster, front.log.first_seq, front.log.last_seq
            )

        app = manager_api(
            front.manager,
            front.log,
            meter,
            settings,
            front.proxies,
            front.monitor,
            partial(read_etcd, self.client.endpoints, settings.cluster),
            view,
        )
        add_leader_redirect(app, front)
        require_token(app, settings.token)
        return app

    async def _open_log(self, stop: trio.Event) -> EtcdLog | None:
        """The log in etcd, read-only; None when asked to stop first. Retries while etcd
        cannot answer."""
        retry = _RETRY_FIRST
        while not stop.is_set():
            try:
                return await EtcdLog.open(self.client, self.settings.cluster, fence=None)
            except EtcdError as exc:  # unavailable, or refusing (then say so until it is fixed)
                log.warning("cannot open the log in etcd yet: %s", exc)
            with trio.move_on_after(retry):
                await stop.wait()
            retry = min(retry * 2, _RETRY_MAX)
        return None

    async def _stop_on(self, stop: trio.Event, http_closed: trio.Event) -> None:
        """At SIGTERM: stop taking requests; a leader hands over in order (its term resigns
        as it ends); then end the terms."""
        await stop.wait()
        self.stopping = True
        http_closed.set()
        if self.actors is not None and self.front.election is not None:
            log.info("shutting down: the leader holds restarts and jobs, then resigns")
            await drain_manager(self.actors, self.settings.stop_grace + 10)
            await self.front.election.resign()  # a standby takes over now, not in a TTL
        self._terms.cancel()

    # -- one term ---------------------------------------------------------------------------

    async def _term(self, event_log: EtcdLog, meter: ManagerMeter) -> None:
        """Stand by on `event_log`, campaign, lead once won, until the lead is lost (or the
        manager stops). The election is resigned and the log closed on the way out."""
        settings = self.settings
        election = Election(
            self.client,
            settings.cluster,
            self.name,
            self.address,
            settings.lease_ttl,
            on_lost=lambda: event_log.step_down("the election says the lead may be lost"),
        )
        try:
            async with trio.open_nursery() as term:
                await term.start(event_log.track)
                meter.watch(event_log)
                self.front.log.log = event_log
                standby, standby_done = self._stand_by(term, event_log, meter)
                self.front.election = election
                await _answered(self.front.manager)  # it has read the log: a win never waits
                self.registration.changed()
                await term.start(self._campaign, election)
                try:
                    fence = await election.wait_leader()
                except RuntimeError:  # the candidacy ended without winning: try again
                    await trio.sleep(_RETRY_FIRST)
                    term.cancel_scope.cancel()
                    return
                began = time.perf_counter()
                self.front.switch(STARTING, None)
                standby_done[1].cancel()
                await standby_done[0].wait()
                try:
                    await event_log.promote(fence)
                except (LogWriteError, EtcdError) as exc:
                    log.warning("cannot lead after all: %s", exc)
                    term.cancel_scope.cancel()
                    return
                handoff = standby[0].hand_over()
                await self._lead(term, election, event_log, meter, handoff, began)
                await _first_of(election.lost.wait, event_log.refused.wait)
                if not self.stopping:
                    log.warning("%s steps down: its actors stop, its tasks run on", self.name)
                term.cancel_scope.cancel()
        finally:
            self.actors = None
            self.front.switch(STARTING, None)
            self.registration.changed()
            with trio.CancelScope(shield=True):
                await election.resign()
                await event_log.aclose()

    def _stand_by(
        self, term: trio.Nursery, event_log: EtcdLog, meter: ManagerMeter
    ) -> tuple[list[Standby], tuple[trio.Event, trio.CancelScope]]:
        """Start the Standby under a supervisor of its own, in a scope that promotion cancels;
        the front serves from it. Returns its holder (the actor as built last) and (an event
        set once it stopped, its scope)."""
        sup = supervisor("orc-standby")
        holder: list[Standby] = []

        def build() -> Standby:
            holder[:] = [Standby(event_log, meter)]
            return holder[0]

        ref = sup.add("manager", build, mailbox_size=MAILBOX)
        scope, done = trio.CancelScope(), trio.Event()

        async def run() -> None:
            try:
                with scope:
                    await sup.run()
            finally:
                done.set()

        term.start_soon(run)
        self.front.switch(STANDBY, ref)
        return holder, (done, scope)

    async def _campaign(
        self, election: Election, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await election.run(task_status=task_status)
        except* EtcdError as group:  # (out of the election's nursery: in a group)
            log.warning("%s: the campaign failed: %s; trying again", self.name, group.exceptions[0])

    async def _lead(
        self,
        term: trio.Nursery,
        election: Election,
        event_log: EtcdLog,
        meter: ManagerMeter,
        handoff: Handoff,
        began: float,
    ) -> None:
        """Build the leader's actors on the standby's state and serve from them at once:
        requests wait in the Manager's mailbox while it catches up with the log."""
        settings = self.settings
        sup: Supervisor = supervisor("orc-manager")
        actors, monitor = build_node_manager(
            settings, sup, event_log, meter, handoff, election.holds
        )
        term.start_soon(sup.run)
        for address in settings.workers:
            term.start_soon(_static_worker, address, monitor, settings)
        self.actors = actors
        self.front.switch(LEADER, actors.manager, monitor, actors.proxies)
        self.registration.changed()
        await _answered(actors.manager)  # its state caught up, and acted on
        took = time.perf_counter() - began
        log.warning(
            "%s leads cluster %s from seq %d (%.0f ms after winning the election)",
            self.name,
            settings.cluster,
            event_log.last_seq,
            took * 1000,
        )
        self.announce(f"Orc manager {self.name} leads cluster {settings.cluster}")


async def _answered(manager: ActorRef[Any]) -> None:
    """Until `manager` (a Standby or a Manager) has started: read or caught up with the log."""
    while True:
        try:
            await manager.ask(Ping(), timeout=_RECOVERY)
            return
        except ActorCrashed:
            continue  # its supervisor builds it again, which starts again


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Until the first of `waits` returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


async def run_ha_manager(
    settings: Settings,
    announce: Callable[[str], None] = print,
    stop: trio.Event | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (or `stop`), then leave the cluster in order."""
    stop = stop if stop is not None else trio.Event()
    async with EtcdClient(settings.etcd_endpoints) as client, trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_signal, stop)
        await HaManager(settings, client, announce).run(stop)
        nursery.cancel_scope.cancel()
    log.info("orc manager %s stopped", manager_name(settings))
