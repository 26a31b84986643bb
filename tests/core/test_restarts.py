"""Restart policies, backoff, health policy and the manager's restart decisions: pure functions."""

from __future__ import annotations

import pytest

from orc.core.decide import Decision, nothing, restart_due, review, unhealthy
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
from orc.core.messages import RestartDue, Unhealthy
from orc.core.model import NodeInfo, State, Task
from orc.core.restarts import RestartSettings, backoff, plan, should_restart, streak_after
from orc.core.state import ClusterState, apply
from orc.core.times import later

T0 = "2026-01-01T00:00:00+00:00"
FAST = RestartSettings(max_restarts=3, backoff=1.0, backoff_max=300.0, reset_after=600.0)


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
    events = review(state, Decision([_exit(3)]), FAST).events
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
    stale = review(state, Decision([_exit(3)]), FAST)
    assert stale.events == []
    assert stale.notes[0].text == "ignoring TaskExited for task t: it waits to restart"
    # the timer: the same node, which can still run it
    due = RestartDue("t", r.not_before, "2026-01-01T00:00:06+00:00")
    events = restart_due(state, due, FAST).events
    assert events == [TaskRestarted(at=due.now, task_id="t", node="w1")]
    _apply_all(state, events)
    assert not state.waiting("t") and state.tasks["t"].starts_at is None
    # a timer of an old backoff fires again: nothing
    assert restart_due(state, due, FAST) == nothing()


def test_always_restarts_a_clean_exit_without_completing() -> None:
    state = _state("always")
    events = review(state, Decision([_exit(0)]), FAST).events
    assert [type(e) for e in events] == [TaskRestarting, TaskExited]
    _apply_all(state, events)  # Running -> Scheduled: never Completed on the way
    assert state.tasks["t"].state == State.SCHEDULED and state.tasks["t"].exit_code == 0


def test_no_policy_and_exhausted_streak_end_the_task() -> None:
    state = _state("no")
    assert review(state, Decision([_exit(3)]), FAST).events == [_exit(3)]
    state = _state("on-failure")
    streak = 0
    for n in range(1, 4):  # three quick failures, three restarts (1, 2, 4 s)
        events = review(state, Decision([_exit(3, later(T0, 10 * n))]), FAST).events
        r = events[0]
        assert isinstance(r, TaskRestarting) and r.restart_count == n and r.delay == 2 ** (n - 1)
        _apply_all(state, events)
        _apply_all(
            state, restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST).events
        )
        apply(state, TaskStarted(at=later(T0, 10 * n + 5), task_id="t", node="w1"))
        streak = r.streak
    assert streak == 3
    [final] = review(state, Decision([_exit(3, later(T0, 40))]), FAST).events
    assert isinstance(final, TaskExited) and "not restarted: 3 restarts in a row" in final.error
    apply(state, final)
    assert state.tasks["t"].state == State.FAILED and state.tasks["t"].restart_count == 3


def test_user_stop_is_never_restarted_and_ends_a_backoff() -> None:
    state = _state("always")
    stopped = TaskExited(at=T0, task_id="t", node="w1", exit_code=143, stopped=True)
    assert review(state, Decision([stopped]), FAST).events == [stopped]
    _apply_all(state, review(state, Decision([_exit(3)]), FAST).events)
    apply(state, TaskStopRequested(at=T0, task_id="t"))
    assert state.tasks["t"].state == State.COMPLETED and not state.waiting("t")


def test_restart_moves_when_its_node_cannot_run_it() -> None:
    state = _state("on-failure")
    _apply_all(state, review(state, Decision([_exit(3)]), FAST).events)
    r = state.restarts["t"]
    lost = NodeInfo(name="w1", address="127.0.0.1:w1", drivers=())  # lost its driver
    apply(state, NodeJoined(at=T0, node=lost))
    events = restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST).events
    assert events == [TaskRestarted(at=r.not_before, task_id="t", node="w2")]
    apply(state, NodeJoined(at=T0, node=NodeInfo(name="w2", address="x:1", drivers=())))
    [unplaced] = restart_due(state, RestartDue("t", r.not_before, r.not_before), FAST).events
    assert isinstance(unplaced, TaskUnplaced) and "node w1 cannot run it" in unplaced.reason


def test_unhealthy_stops_then_fails_with_the_reason() -> None:
    state = _state("on-failure")
    starts = state.tasks["t"].starts_at
    assert starts is not None
    verdict = Unhealthy("t", "w1", starts, 3, "HTTP 500", T0)
    [event] = unhealthy(state, verdict, FAST).events
    assert isinstance(event, TaskUnhealthy) and event.stop
    apply(state, event)
    assert unhealthy(state, verdict, FAST) == nothing()  # acted on already
    # orc's stop comes back as a stopped exit: it counts as the failure
    stopped = TaskExited(at=T0, task_id="t", node="w1", exit_code=143, stopped=True)
    events = review(state, Decision([stopped]), FAST).events
    assert isinstance(events[0], TaskRestarting) and events[0].reason == "unhealthy: HTTP 500"
    # with policy `no` the verdict is recorded and the task keeps running
    state = _state("no")
    [event] = unhealthy(state, Unhealthy("t", "w1", starts, 3, "HTTP 500", T0), FAST).events
    assert isinstance(event, TaskUnhealthy) and not event.stop
    apply(state, event)
    assert state.tasks["t"].state == State.RUNNING and state.tasks["t"].error.startswith("unh")


def test_lost_task_restarts() -> None:
    state = _state("on-failure")
    events = review(state, Decision([TaskFailed(at=T0, task_id="t", error="lost")]), FAST).events
    assert [type(e) for e in events] == [TaskRestarting, TaskFailed]
    _apply_all(state, events)
    assert state.tasks["t"].state == State.SCHEDULED
