"""Restarts and health checks in the shell (the pure policies and decisions are tested in
tests/core/test_restarts.py): the actors under MockClock, and through the HTTP API with process
tasks (restart limits, backoff spacing in the log, `always` after exit 0, `no`, DELETE during a
backoff, a backoff that holds across a manager restart)."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import trio

from actors import Supervisor
from eventlog.reader import read_log
from orc.core.events import (
    AnyEvent,
    TaskRestarted,
    TaskRestarting,
    TaskStarted,
    TaskUnhealthy,
)
from orc.core.messages import Arm, Healthy, Hold, Unhealthy, Watch
from orc.core.model import State
from orc.core.restarts import RestartSettings
from orc.core.times import later
from orc.shell.health import HealthChecker
from tests.conftest import make_settings, running_cluster, wait_for_state
from tests.drivers.test_docker import docker_cluster
from tests.drivers.test_docker import engine as engine  # fixtures, shared with tests/test_docker.py
from tests.drivers.test_docker import test_images as test_images

T0 = "2026-01-01T00:00:00+00:00"
FAST = RestartSettings(max_restarts=3, backoff=1.0, backoff_max=300.0, reset_after=600.0)


# -- actors under MockClock -----------------------------------------------------------------------


def _mock_now() -> str:
    """Wall time that follows trio's (mock) clock."""
    return later(T0, trio.current_time())


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[float, object]] = []

    async def tell(self, message: object) -> None:
        self.got.append((trio.current_time(), message))


async def test_restarter_fires_at_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    from orc.shell.restarter import Restarter

    inbox = Inbox()
    sup = Supervisor("t")
    ref = sup.add("restarter", lambda: Restarter(lambda: inbox, _mock_now))  # type: ignore[arg-type, return-value]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        start = trio.current_time()
        await ref.tell(Arm("a", later(T0, start + 4)))
        await ref.tell(Arm("b", later(T0, start + 1)))
        await ref.tell(Arm("a", later(T0, start + 2)))  # re-armed: the later deadline wins
        await trio.sleep(10)
        # rung a little late on purpose (`orc.shell.alarms.SLACK`), never early
        assert [(round(t - start, 1), m.task_id) for t, m in inbox.got] == [(1, "b"), (2, "a")]  # type: ignore[attr-defined]
        await ref.tell(Hold())
        await ref.tell(Arm("c", later(T0, trio.current_time() + 1)))
        await trio.sleep(5)
        assert len(inbox.got) == 2
        nursery.cancel_scope.cancel()


async def test_health_checks_at_intervals_with_timeouts(autojump_clock: trio.abc.Clock) -> None:
    inbox = Inbox()
    answers = {"ok": [], "bad": [], "slow": []}

    async def probe(url: str) -> str | None:
        path = url.rsplit("/", 1)[1]
        answers[path].append(trio.current_time())
        if path == "slow":
            await trio.sleep(5)  # longer than the timeout
        return "HTTP 500" if path == "bad" else None

    sup = Supervisor("t")
    ref = sup.add(
        "health",
        lambda: HealthChecker(lambda: inbox, _mock_now, 10, 2, 3, probe),  # type: ignore[arg-type, return-value]
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        start = trio.current_time()
        for name in answers:
            await ref.tell(Watch(name, "w1", T0, f"http://h:1/{name}"))
        await ref.tell(Watch("ok", "w1", T0, "http://h:1/ok"))  # the same run: no second loop
        await trio.sleep(95)
        got = inbox.got  # type: ignore[attr-defined]
        passes = [(round(t - start), m.task_id) for t, m in got if isinstance(m, Healthy)]
        assert passes == [(10, "ok")]  # its first pass, once: a rolling update waits for it
        verdicts = {m.task_id: (round(t - start), m) for t, m in got if isinstance(m, Unhealthy)}
        assert set(verdicts) == {"bad", "slow"}
        at, bad = verdicts["bad"]
        assert at == 30 and bad.failures == 3 and "HTTP 500" in bad.reason
        at, slow = verdicts["slow"]
        assert at == 36 and "no answer within 2s" in slow.reason  # 3 x (10 s + 2 s timeout)
        assert [round(t - start) for t in answers["bad"]] == [10, 20, 30]  # then it stops
        assert len(answers["ok"]) == 9  # every 10 s, still healthy
        # a manager that restarts watches its running tasks again: it hears of a pass again
        # (it may have lost the first word), and the same run is not checked twice
        seen = len(got)
        await ref.tell(Watch("ok", "w1", T0, "http://h:1/ok"))
        await trio.sleep(1)
        again = [m.task_id for _, m in got[seen:] if isinstance(m, Healthy)]
        assert again == ["ok"]
        await trio.sleep(9)
        assert len(answers["ok"]) == 10
        nursery.cancel_scope.cancel()


# -- through the HTTP API, with process tasks -----------------------------------------------------


@contextlib.asynccontextmanager
async def running(data_dir: Path, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_cluster(make_settings(data_dir, **env)) as cluster:
        yield cluster.manager


async def submit(client: httpx.AsyncClient, policy: str, code: int, sleep: float = 0) -> str:
    task_id = str(uuid.uuid4())
    script = f"import time, sys; time.sleep({sleep}); sys.exit({code})"
    task = {"ID": task_id, "RestartPolicy": policy, "Cmd": [sys.executable, "-c", script]}
    r = await client.post("/tasks", json={"ID": task_id, "State": 2, "Task": task})
    assert r.status_code == 201, r.text
    return task_id


def events_of(data_dir: Path, task_id: str) -> list[AnyEvent]:
    return [
        e for _, e in read_log(data_dir / "log", AnyEvent) if getattr(e, "task_id", "") == task_id
    ]


def _t(at: str) -> float:
    return datetime.fromisoformat(at).astimezone(UTC).timestamp()


FAST_ENV = {"ORC_RESTART_BACKOFF": "0.2", "ORC_RESTART_MAX": "3"}


async def test_on_failure_restarts_max_times_with_backoff(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, **FAST_ENV) as client:
        failing = await submit(client, "on-failure", 3)
        never = await submit(client, "no", 3)
        ok = await submit(client, "on-failure", 0)
        task = await wait_for_state(client, failing, State.FAILED, timeout=15)
        assert task["RestartCount"] == 3 and task["ExitCode"] == 3
        assert "not restarted: 3 restarts in a row" in task["Error"]
        assert (await wait_for_state(client, never, State.FAILED))["RestartCount"] == 0
        assert (await wait_for_state(client, ok, State.COMPLETED))["RestartCount"] == 0
    history = events_of(data, failing)
    restarts = [e for e in history if isinstance(e, TaskRestarting)]
    assert [(r.restart_count, r.delay) for r in restarts] == [(1, 0.2), (2, 0.4), (3, 0.8)]
    assert all(r.reason == "exited with status 3" for r in restarts)
    # each run starts only after its backoff: spacing visible in the log
    resumed = [e for e in history if isinstance(e, TaskRestarted)]
    assert len(resumed) == 3
    for r, again in zip(restarts, resumed, strict=True):
        assert _t(again.at) >= _t(r.not_before) - 0.01
        assert _t(again.at) - _t(r.at) >= r.delay - 0.01
    starts = [e for e in history if isinstance(e, TaskStarted)]
    assert len(starts) == 4
    assert not any(isinstance(e, TaskRestarting) for e in events_of(data, never))


async def test_always_restarts_after_exit_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, **FAST_ENV) as client:
        task_id = await submit(client, "always", 0)
        # three clean exits, three restarts, then the streak is over and it ends Completed
        task = await wait_for_state(client, task_id, State.COMPLETED, timeout=15)
        assert task["RestartCount"] == 3 and task["ExitCode"] == 0
    restarts = [e for e in events_of(data, task_id) if isinstance(e, TaskRestarting)]
    assert [r.exit_code for r in restarts] == [0, 0, 0]


async def test_delete_during_backoff_stops_for_good(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, ORC_RESTART_BACKOFF="1.5") as client:
        task_id = await submit(client, "always", 3)
        with trio.fail_after(10):
            while (await client.get(f"/tasks/{task_id}")).json()["RestartCount"] < 1:
                await trio.sleep(0.02)
        waiting = (await client.get(f"/tasks/{task_id}")).json()
        assert waiting["State"] == State.SCHEDULED and "restart 1 in 1.5s" in waiting["Error"]
        assert (await client.delete(f"/tasks/{task_id}")).status_code == 204
        task = await wait_for_state(client, task_id, State.COMPLETED)
        await trio.sleep(2)  # past the backoff: still stopped
        task = (await client.get(f"/tasks/{task_id}")).json()
        assert task["State"] == State.COMPLETED and task["RestartCount"] == 1
    assert not any(isinstance(e, TaskRestarted) for e in events_of(data, task_id))


async def test_backoff_holds_across_a_manager_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, ORC_RESTART_BACKOFF="3") as client:
        task_id = await submit(client, "on-failure", 3)
        with trio.fail_after(10):
            while (await client.get(f"/tasks/{task_id}")).json()["RestartCount"] < 1:
                await trio.sleep(0.02)
    [restarting] = [e for e in events_of(data, task_id) if isinstance(e, TaskRestarting)]
    async with running(data, ORC_RESTART_BACKOFF="3") as client:
        back = datetime.now(UTC).timestamp()
        assert back < _t(restarting.not_before)  # the backoff is not over yet
        task = (await client.get(f"/tasks/{task_id}")).json()
        assert task["State"] == State.SCHEDULED and task["RestartCount"] == 1
        with trio.fail_after(10):
            while (await client.get(f"/tasks/{task_id}")).json()["RestartCount"] < 2:
                await trio.sleep(0.05)
    history = events_of(data, task_id)
    [resumed, *_] = [e for e in history if isinstance(e, TaskRestarted)]
    # restarted after the remaining backoff, neither at once nor never
    assert _t(resumed.at) >= _t(restarting.not_before) - 0.01
    assert _t(resumed.at) - _t(restarting.not_before) < 1.5


# -- a health-checked container (skipped without a Docker engine, as tests/test_docker.py) --------


async def test_health_checked_container(
    tmp_path: Path,
    engine: docker.DockerClient,
    test_images: dict[str, str],
) -> None:
    env = {
        "ORC_HEALTH_INTERVAL": "0.2",
        "ORC_HEALTH_TIMEOUT": "1",
        "ORC_HEALTH_FAILURES": "2",
        "ORC_RESTART_MAX": "2",
        "ORC_RESTART_BACKOFF": "0.1",
    }
    async with docker_cluster(tmp_path / "data", engine, **env) as c:
        spec = {"Image": test_images["http"], "RestartPolicy": "on-failure"}
        healthy = await c.submit(Name="healthy", HealthCheck="/health", **spec)
        failing = await c.submit(Name="failing", HealthCheck="/healthfail", **spec)
        task = await wait_for_state(c.manager, failing, State.FAILED, timeout=30)
        assert task["RestartCount"] == 2
        assert task["Error"].startswith("unhealthy: 2 health checks failed in a row")
        assert "HTTP 500" in task["Error"] and "not restarted: 2 restarts in a row" in task["Error"]
        ok = (await c.manager.get(f"/tasks/{healthy}")).json()
        assert ok["State"] == State.RUNNING and ok["RestartCount"] == 0 and ok["Error"] == ""
        history = events_of(c.settings.data_dir, failing)
        assert sum(isinstance(e, TaskUnhealthy) for e in history) == 3
        assert sum(isinstance(e, TaskRestarting) for e in history) == 2
