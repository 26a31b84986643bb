"""Restart policies, backoff and health checks: pure functions, actors under MockClock, and
through the HTTP API with process tasks (restart limits, backoff spacing in the log, `always`
after exit 0, `no`, DELETE during a backoff, a backoff that holds across a manager restart)."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
import trio

from actors import Supervisor
from eventlog.reader import read_log
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
    TaskUnplaced,
)
from orc.core.health import count_failures, health_url
from orc.core.messages import Arm, Hold, RestartDue, Unhealthy, Watch
from orc.core.model import NodeInfo, State, Task
from orc.core.restarting import restart_due, review, unhealthy
from orc.core.restarts import RestartSettings, backoff, plan, should_restart, streak_after
from orc.core.state import ClusterState, apply
from orc.core.times import later
from orc.shell.health import HealthChecker
from tests.conftest import make_settings, running_cluster, wait_for_state
from tests.drivers.test_docker import docker_cluster
from tests.drivers.test_docker import engine as engine  # fixtures, shared with tests/test_docker.py
from tests.drivers.test_docker import test_images as test_images

T0 = "2026-01-01T00:00:00+00:00"
FAST = RestartSettings(max_restarts=3, backoff=1.0, backoff_max=300.0, reset_after=600.0)


# -- pure: policies and backoff ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "clean", "restart"),
    [
        ("no", False, False),
        ("no", True, False),
        ("on-failure", False, True),
        ("on-failure", True, False),
        ("always", False, True),
        ("always", True, True),
        ("unless-stopped", False, True),
        ("unless-stopped", True, True),
    ],
)
def test_should_restart(policy: str, clean: bool, restart: bool) -> None:
    assert should_restart(policy, clean) is restart


def test_backoff_doubles_to_the_cap() -> None:
    assert [backoff(n) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff(10_000) == 300
    assert backoff(3, RestartSettings(backoff=0.5, backoff_max=1.5)) == 1.5


def test_streak_resets_after_a_long_healthy_run() -> None:
    assert streak_after(2, 5.0) == 3
    assert streak_after(2, None) == 3  # never ran: the streak goes on
    assert streak_after(7, 600.0) == 1  # ten minutes up: a new streak, backoff back to 1 s
    assert backoff(streak_after(7, 600.0)) == 1


def test_plan_stops_at_the_maximum() -> None:
    assert plan("on-failure", False, 0, 1.0, FAST)[:3] == (True, 1, 1.0)
    assert plan("on-failure", False, 2, 1.0, FAST)[:3] == (True, 3, 4.0)
    p = plan("on-failure", False, 3, 1.0, FAST)
    assert not p.restart and "3 restarts in a row" in p.why_not
    assert plan("on-failure", False, 3, 900.0, FAST).restart  # a long run ended the streak
    assert not plan("no", False, 0, 1.0, FAST).restart
    assert not plan("on-failure", False, 0, 1.0, RestartSettings(max_restarts=0)).restart


def test_health_failures_count_in_a_row() -> None:
    failures = 0
    for failed in (True, True, False, True, True, True):
        failures = count_failures(failures, failed)
    assert failures == 3


def test_health_url() -> None:
    node = NodeInfo(name="w", address="127.0.0.1:8888", drivers=("docker",))
    ports = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32789"}]}
    task = Task(id="t", health_check="/health", host_ports=ports)
    assert health_url(task, node) == "http://127.0.0.1:32789/health"
    assert health_url(Task(id="t", health_check="/health"), node) is None  # no port yet
    assert health_url(Task(id="t", host_ports=ports), node) is None  # no check
    assert health_url(task, None) is None


# -- pure: decisions over the state ---------------------------------------------------------------


def _state(policy: str, driver: str = "process") -> ClusterState:
    state = ClusterState()
    for name in ("w1", "w2"):
        info = NodeInfo(name=name, address=f"127.0.0.1:{name}", drivers=("process",))
        apply(state, NodeJoined(at=T0, node=info))
    task = Task(id="t", restart_policy=policy, driver=driver, cmd=["x"])
    apply(state, TaskSubmitted(at=T0, task=task))
    apply(state, TaskScheduled(at=T0, task_id="t", node="w1"))
    apply(state, TaskStarted(at=T0, task_id="t", node="w1"))
    return state


def _exit(code: int, at: str = "2026-01-01T00:00:05+00:00") -> TaskExited:
    return TaskExited(at=at, task_id="t", node="w1", exit_code=code, error="" if code == 0 else "x")


def _apply_all(state: ClusterState, events: list[AnyEvent]) -> ClusterState:
    for event in events:
        apply(state, event)
    return state


def test_failure_restarts_on_the_same_node_after_backoff() -> None:
    state = _state("on-failure")
    events = review(state, [_exit(3)], FAST)
    assert [type(e) for e in events] == [TaskRestarting, TaskExited]
    r = events[0]
    assert isinstance(r, TaskRestarting)
    assert (r.node, r.restart_count, r.streak, r.delay, r.exit_code) == ("w1", 1, 1, 1.0, 3)
    assert r.not_before == "2026-01-01T00:00:06+00:00"
    _apply_all(state, events)
    task = state.tasks["t"]
    assert task.state == State.SCHEDULED and task.restart_count == 1 and task.exit_code == 3
    assert state.waiting("t")
    # a stale report of the old run, while it waits, changes nothing
    assert review(state, [_exit(3)], FAST) == []
    # the timer: the same node, which can still run it
    due = RestartDue("t", r.not_before, "2026-01-01T00:00:06+00:00")
    events, _ = restart_due(state, due, FAST)
    assert events == [TaskRestarted(at=due.now, task_id="t", node="w1")]
    _apply_all(state, events)
    assert not state.waiting("t") and state.tasks["t"].starts_at is None
    # a timer of an old backoff fires again: nothing
    assert restart_due(state, due, FAST) == ([], None)


def test_always_restarts_a_clean_exit_without_completing() -> None:
    state = _state("always")
    events = review(state, [_exit(0)], FAST)
    assert [type(e) for e in events] == [TaskRestarting, TaskExited]
    _apply_all(state, events)  # Running -> Scheduled: never Completed on the way
    assert state.tasks["t"].state == State.SCHEDULED and state.tasks["t"].exit_code == 0


def test_no_policy_and_exhausted_streak_end_the_task() -> None:
    state = _state("no")
    assert review(state, [_exit(3)], FAST) == [_exit(3)]
    state = _state("on-failure")
    streak = 0
    for n in range(1, 4):  # three quick failures, three restarts (1, 2, 4 s)
        events = review(state, [_exit(3, later(T0, 10 * n))], FAST)
        r = events[0]
        assert isinstance(r, TaskRestarting) and r.restart_count == n and r.delay == 2 ** (n - 1)
        _apply_all(state, events)
        _apply_all(state, restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST)[0])
        apply(state, TaskStarted(at=later(T0, 10 * n + 5), task_id="t", node="w1"))
        streak = r.streak
    assert streak == 3
    [final] = review(state, [_exit(3, later(T0, 40))], FAST)
    assert isinstance(final, TaskExited) and "not restarted: 3 restarts in a row" in final.error
    apply(state, final)
    assert state.tasks["t"].state == State.FAILED and state.tasks["t"].restart_count == 3


def test_user_stop_is_never_restarted_and_ends_a_backoff() -> None:
    state = _state("always")
    stopped = TaskExited(at=T0, task_id="t", node="w1", exit_code=143, stopped=True)
    assert review(state, [stopped], FAST) == [stopped]
    _apply_all(state, review(state, [_exit(3)], FAST))
    apply(state, TaskStopRequested(at=T0, task_id="t"))
    assert state.tasks["t"].state == State.COMPLETED and not state.waiting("t")


def test_restart_moves_when_its_node_cannot_run_it() -> None:
    state = _state("on-failure")
    _apply_all(state, review(state, [_exit(3)], FAST))
    r = state.restarts["t"]
    lost = NodeInfo(name="w1", address="127.0.0.1:w1", drivers=())  # lost its driver
    apply(state, NodeJoined(at=T0, node=lost))
    events, _ = restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST)
    assert events == [TaskRestarted(at=r.not_before, task_id="t", node="w2")]
    apply(state, NodeJoined(at=T0, node=NodeInfo(name="w2", address="x:1", drivers=())))
    [unplaced], _ = restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST)
    assert isinstance(unplaced, TaskUnplaced) and "node w1 cannot run it" in unplaced.reason


def test_unhealthy_stops_then_fails_with_the_reason() -> None:
    state = _state("on-failure")
    starts = state.tasks["t"].starts_at
    assert starts is not None
    verdict = Unhealthy("t", "w1", starts, 3, "HTTP 500", T0)
    [event], _ = unhealthy(state, verdict, FAST)
    assert isinstance(event, TaskUnhealthy) and event.stop
    apply(state, event)
    assert unhealthy(state, verdict, FAST) == ([], None)  # acted on already
    # orc's stop comes back as a stopped exit: it counts as the failure
    stopped = TaskExited(at=T0, task_id="t", node="w1", exit_code=143, stopped=True)
    events = review(state, [stopped], FAST)
    assert isinstance(events[0], TaskRestarting) and events[0].reason == "unhealthy: HTTP 500"
    # with policy `no` the verdict is recorded and the task keeps running
    state = _state("no")
    [event], _ = unhealthy(state, Unhealthy("t", "w1", starts, 3, "HTTP 500", T0), FAST)
    assert isinstance(event, TaskUnhealthy) and not event.stop
    apply(state, event)
    assert state.tasks["t"].state == State.RUNNING and state.tasks["t"].error.startswith("unh")


def test_lost_task_restarts() -> None:
    state = _state("on-failure")
    events = review(state, [TaskFailed(at=T0, task_id="t", error="lost")], FAST)
    assert [type(e) for e in events] == [TaskRestarting, TaskFailed]
    _apply_all(state, events)
    assert state.tasks["t"].state == State.SCHEDULED


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
        assert [(round(t - start, 3), m.task_id) for t, m in inbox.got] == [(1, "b"), (2, "a")]  # type: ignore[attr-defined]
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
        verdicts = {m.task_id: (round(t - start), m) for t, m in inbox.got}  # type: ignore[attr-defined]
        assert set(verdicts) == {"bad", "slow"}
        at, bad = verdicts["bad"]
        assert at == 30 and bad.failures == 3 and "HTTP 500" in bad.reason
        at, slow = verdicts["slow"]
        assert at == 36 and "no answer within 2s" in slow.reason  # 3 x (10 s + 2 s timeout)
        assert [round(t - start) for t in answers["bad"]] == [10, 20, 30]  # then it stops
        assert len(answers["ok"]) == 9  # every 10 s, still healthy
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
