"""Health checks: the HealthChecker actor GETs a Running task's `HealthCheck` path on its host
port every `interval` seconds, with a `timeout`; after `threshold` failures in a row it tells the
manager `Unhealthy`, and the task's restart policy decides (`review` and `unhealthy` in
orc/core/decide.py). The first check that passes on a run is told too (`Healthy`): a job's
rolling update waits for it.

A task without a host port (yet) is not checked, and not failed either. The URL is
`http://<node host>:<host port><path>`, the node host taken from its address (`host:port`).
The probe is a function, so tests can put a fake at that boundary; the real one uses httpx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import trio

from actors import ActorRef, Mailbox
from orc.core.health import count_failures
from orc.core.messages import Healthy, Unhealthy, Unwatch, Watch
from orc.shell.follower import ManagerFollower
from orc.shell.meter import ManagerMeter

# A probe answers None for a healthy reply, or why the check failed.
Probe = Callable[[str], Awaitable[str | None]]


async def http_probe(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}: {exc}".rstrip(": ")
    if 200 <= response.status_code < 400:
        return None
    return f"GET {url}: HTTP {response.status_code}"


class HealthChecker(ManagerFollower):
    role = "health"

    def __init__(
        self,
        manager: Callable[[], ActorRef],
        now: Callable[[], str],
        interval: float = 10.0,
        timeout: float = 2.0,
        threshold: int = 3,
        probe: Probe | None = None,
        replaces_crashed: bool = False,
        meter: ManagerMeter | None = None,
    ) -> None:
        super().__init__(manager, replaces_crashed)
        self.now = now
        self.meter = meter  # counts each failed check, for /metrics
        self.interval = interval
        self.timeout = timeout
        self.threshold = max(1, threshold)
        self.probe = probe
        # task ID -> (the run it checks, its cancel scope); and the tasks whose run passed
        self.watching: dict[str, tuple[str, trio.CancelScope]] = {}
        self.passed: set[str] = set()
        self._nursery: trio.Nursery | None = None

    async def run(self, mailbox: Mailbox) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.probe is None:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    self.probe = lambda url: http_probe(client, url)
                    await super().run(mailbox)
            else:
                await super().run(mailbox)
            nursery.cancel_scope.cancel()

    async def handle(self, message: object) -> object:
        match message:
            case Watch(task_id, node, starts_at, _):
                current = self.watching.get(task_id)
                if current is not None and current[0] == starts_at:
                    if task_id in self.passed:  # the manager may have lost the first word
                        await self.manager().tell(Healthy(task_id, node, starts_at, self.now()))
                    return None
                self._unwatch(task_id)
                scope = trio.CancelScope()
                self.watching[task_id] = (starts_at, scope)
                assert self._nursery is not None
                self._nursery.start_soon(self._check, message, scope)
            case Unwatch(task_id):
                self._unwatch(task_id)
            case _:
                raise TypeError(f"health checker: unexpected message {message!r}")
        return None

    def _unwatch(self, task_id: str) -> None:
        self.passed.discard(task_id)
        current = self.watching.pop(task_id, None)
        if current is not None:
            current[1].cancel()

    async def _check(self, watch: Watch, scope: trio.CancelScope) -> None:
        failures = 0
        passed = False
        with scope:
            while True:
                await trio.sleep(self.interval)
                why: str | None = f"GET {watch.url}: no answer within {self.timeout:g}s"
                with trio.move_on_after(self.timeout):
                    assert self.probe is not None
                    why = await self.probe(watch.url)
                if why is None and not passed:
                    passed = True
                    self.passed.add(watch.task_id)
                    await self.manager().tell(
                        Healthy(watch.task_id, watch.node, watch.starts_at, self.now())
                    )
                failures = count_failures(failures, why is not None)
                if why is not None and self.meter is not None:
                    self.meter.health_check_failures += 1
                if failures >= self.threshold:
                    break
            if self.watching.get(watch.task_id, (None,))[0] == watch.starts_at:
                del self.watching[watch.task_id]
                self.passed.discard(watch.task_id)
            reason = f"{failures} health checks failed in a row; last: {why}"
            await self.manager().tell(
                Unhealthy(watch.task_id, watch.node, watch.starts_at, failures, reason, self.now())
            )
