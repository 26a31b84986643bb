"""A total core (issue 13): each way an event, a task or a time used to make the core raise, and
what it does instead. Every test here raised on the code before (see each docstring).

The rules are in `orc.core.state.apply` and `orc.core.quarantine`; the property tests beside
this file (`test_total_core_properties.py`) try them on generated logs.
"""

from __future__ import annotations

import math

import msgspec
import pytest

from orc.core import decide
from orc.core.events import (
    AnyEvent,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskPurged,
    TaskRestarted,
    TaskRestarting,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnhealthy,
    TaskUnplaced,
)
from orc.core.messages import Purge, RestartDue
from orc.core.model import NodeInfo, State, Task
from orc.core.nodeview import node_views
from orc.core.placement import (
    POLICIES,
    TOO_MUCH_CPU,
    Placer,
    allocations,
    choose,
    epvm_cost,
    fit_slack,
    nano_cpus,
    need_of,
)
from orc.core.quarantine import QUARANTINED, out_of_bounds
from orc.core.restarts import RestartState
from orc.core.snapshot import decode_state, encode_state, state_digest
from orc.core.state import ClusterState, apply, replay

T0 = "2026-11-28T12:00:00+00:00"
T1 = "2026-11-28T12:00:01+00:00"
T2 = "2026-11-28T12:00:02+00:00"
ID = "aaaaaaaa-0000-4000-8000-000000000001"
NODE = NodeInfo(name="w1", address="127.0.0.1:8888", drivers=("process",), cores=2, memory=1 << 30)


def started(task: Task | None = None) -> list[AnyEvent]:
    """A node, and a task submitted, placed on it and running."""
    task = task or Task(id=ID, name="web", cmd=["true"], driver="process")
    return [
        NodeJoined(at=T0, node=NODE),
        TaskSubmitted(at=T0, task=task),
        TaskScheduled(at=T0, task_id=task.id, node="w1"),
        TaskStarted(at=T0, task_id=task.id, node="w1"),
    ]


def one_by_one(events: list[AnyEvent]) -> ClusterState:
    state = ClusterState()
    for event in events:
        apply(state, event)
    return state


# -- apply: quarantine an illegal transition ----------------------------------------------------


def test_a_start_after_the_end_quarantines_the_task_live_and_in_replay() -> None:
    """Before: `apply` raised IllegalTransition, which crashed the manager, and `replay`
    raised it again at every start."""
    events = [*started(), TaskExited(at=T1, task_id=ID, node="w1", exit_code=0)]
    events.append(TaskStarted(at=T2, task_id=ID, node="w1"))
    state = one_by_one(events)
    task = state.tasks[ID]
    assert (task.state, task.updated_at, task.finished_at) == (State.FAILED, T2, T2)
    assert task.error == (
        "quarantined: TaskStarted refused: illegal transition Completed -> Running"
    )
    record = state.quarantined[ID]
    assert (record.event, record.at, record.kind) == ("TaskStarted", T2, "illegal-transition")
    assert record.detail == "illegal transition Completed -> Running"
    # the manager's start-up (`replay`, its inlined loop) and one `apply` per event agree
    assert state_digest(replay(events)) == state_digest(state)


def test_a_quarantine_ends_what_the_task_waited_for() -> None:
    """A task asked to stop and found unhealthy, or one waiting out a restart backoff, once
    quarantined: nothing is left that would stop it again or restart it."""
    events = [
        *started(Task(id=ID, cmd=["false"], driver="process", restart_policy="always")),
        TaskUnhealthy(at=T1, task_id=ID, node="w1", reason="unhealthy", failures=3, stop=True),
        TaskStopRequested(at=T1, task_id=ID),
        TaskSubmitted(at=T1, task=Task(id="other")),
        TaskStarted(at=T2, task_id=ID, node="w1"),  # Running -> Running: not a transition
    ]
    state = replay(events)
    assert state.tasks[ID].state == State.FAILED and ID in state.quarantined
    assert ID not in state.stop_requested and ID not in state.unhealthy
    waiting = [
        *started(Task(id=ID, cmd=["false"], driver="process", restart_policy="always")),
        TaskRestarting(
            at=T1,
            task_id=ID,
            node="w1",
            reason="exited 1",
            restart_count=1,
            streak=1,
            delay=1.0,
            not_before=T2,
        ),
    ]
    state = replay(waiting)
    assert state.waiting(ID)
    apply(state, TaskScheduled(at=T2, task_id=ID, node="w1"))  # Scheduled -> Scheduled
    assert state.tasks[ID].state == State.FAILED and ID not in state.restarts
    assert decide.restart_due(state, RestartDue(ID, T2, T2)).events == []


def test_a_value_no_handler_can_fold_quarantines_the_task() -> None:
    """Whatever a handler raises on (here: a restart count that is not a number, as a decoder
    of some older log might have let through), the task is quarantined, saying why."""
    bad = TaskRestarting(
        at=T1,
        task_id=ID,
        node="w1",
        reason="r",
        restart_count=1,
        streak=1,
        delay="soon",  # type: ignore[arg-type]
        not_before=T2,
    )
    state = one_by_one([*started(), bad])
    assert state.tasks[ID].state == State.FAILED
    assert state.quarantined[ID].kind == "impossible"
    assert state.tasks[ID].error == (
        "quarantined: TaskRestarting refused:"
        " TypeError: '<' not supported between instances of 'str' and 'int'"
    )


# -- apply: skip what names nothing it knows, or changes what must not change -------------------

ABOUT_NOBODY: list[AnyEvent] = [
    TaskUnplaced(at=T1, task_id="nobody", reason="r"),
    TaskScheduled(at=T1, task_id="nobody", node="w1"),
    TaskStarted(at=T1, task_id="nobody", node="w1", worker_seq=7),
    TaskExited(at=T1, task_id="nobody", node="w1", exit_code=0, worker_seq=8),
    TaskStopRequested(at=T1, task_id="nobody"),
    TaskFailed(at=T1, task_id="nobody", error="lost"),
    TaskRestarting(
        at=T1,
        task_id="nobody",
        node="w1",
        reason="r",
        restart_count=1,
        streak=1,
        delay=1.0,
        not_before=T2,
    ),
    TaskRestarted(at=T1, task_id="nobody", node="w1"),
    TaskUnhealthy(at=T1, task_id="nobody", node="w1", reason="r", failures=1, stop=True),
    TaskPurged(at=T1, task_id="nobody", reason="r"),
]


@pytest.mark.parametrize("event", ABOUT_NOBODY, ids=lambda e: type(e).__name__)
def test_an_event_about_an_unknown_task_changes_nothing(event: AnyEvent) -> None:
    """Before: KeyError from `apply` (the manager crashed, and could not start again)."""
    state = one_by_one(started())
    before = encode_state(state)
    apply(state, event)
    assert encode_state(state) == before
    assert state_digest(replay([*started(), event])) == state_digest(state)


def test_a_restart_nobody_waits_for_is_skipped() -> None:
    """Before: KeyError (no restart state), after the task had already been changed."""
    state = one_by_one([*started(), TaskRestarted(at=T1, task_id=ID, node="w2")])
    assert (state.tasks[ID].state, state.tasks[ID].node) == (State.RUNNING, "w1")
    assert state.quarantined == {}


def test_reports_from_elsewhere_and_after_the_end_are_skipped() -> None:
    """What `orc replay --check` has always skipped, `apply` skips too, so the manager and the
    replay rebuild one state: a start or an exit from a node the task is not on, a placement on
    a node that never joined, a note on an ended task, a purge of a running one."""
    state = one_by_one(started())
    elsewhere: tuple[AnyEvent, ...] = (
        TaskExited(at=T1, task_id=ID, node="w9", exit_code=0, worker_seq=3),
        TaskScheduled(at=T1, task_id=ID, node="ghost"),
        TaskPurged(at=T1, task_id=ID, reason="ended long ago"),
    )
    for event in elsewhere:
        apply(state, event)
    assert state.tasks[ID].state == State.RUNNING and state.node_seqs == {}
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=0))
    ended = state.tasks[ID]
    after_the_end: tuple[AnyEvent, ...] = (
        TaskUnplaced(at=T2, task_id=ID, reason="no node"),
        TaskUnhealthy(at=T2, task_id=ID, node="w1", reason="r", failures=3, stop=True),
        TaskStopRequested(at=T2, task_id=ID),
    )
    for event in after_the_end:
        apply(state, event)
    assert state.tasks[ID] is ended and not state.stop_requested and not state.unhealthy


def test_old_snapshots_and_digests_are_unchanged() -> None:
    """A state with no quarantine hashes and encodes as before (the golden logs' digests hold
    it too); a snapshot written before `quarantined` existed still loads."""
    state = one_by_one(started())
    old = msgspec.msgpack.encode({k: v for k, v in msgspec.to_builtins(state).items()})
    without = msgspec.msgpack.decode(old)
    del without["quarantined"]
    assert decode_state(msgspec.msgpack.encode(without)) == state
    quarantined = one_by_one([*started(), TaskScheduled(at=T1, task_id=ID, node="w1")])
    assert state_digest(decode_state(encode_state(quarantined))) == state_digest(quarantined)


# -- start-up: specs outside today's bounds -----------------------------------------------------


def test_out_of_bounds_finds_the_tasks_an_older_orc_accepted() -> None:
    """Before: no such check; the 1e308-CPU task reached the scheduler at every start."""
    huge = Task(id="huge", image="busybox", cpu=1e308, driver="docker")
    nul = Task(id="nul", cmd=["a\x00b"], driver="process")
    done = Task(id="done", cpu=math.inf, driver="process")
    fine = Task(id="fine", cmd=["true"], driver="process")
    state = one_by_one(
        [
            *started(nul),
            *(TaskSubmitted(at=T0, task=t) for t in (huge, done, fine)),
            TaskStopRequested(at=T1, task_id="done"),  # ended: left alone
        ]
    )
    found = out_of_bounds(state.tasks.values(), T2)
    assert [(e.task_id, e.at) for e in found] == [("nul", T2), ("huge", T2)]
    assert found[1].error == (f"{QUARANTINED}Task.CPU: must be a finite number between 0 and 1024")
    assert found[0].error.startswith(f"{QUARANTINED}Task.Cmd")
    assert out_of_bounds(one_by_one(started()).tasks.values(), T2) == []


def test_a_quarantine_at_start_up_ends_a_task_waiting_to_restart() -> None:
    """A `TaskFailed` ends a task waiting out a backoff only when it is a quarantine; any other
    is the record of the run the restart replaces (`decide.review`)."""
    waiting = [
        *started(Task(id=ID, cmd=["a\x00"], driver="process", restart_policy="always")),
        TaskRestarting(
            at=T1,
            task_id=ID,
            node="w1",
            reason="exited 1",
            restart_count=1,
            streak=1,
            delay=5.0,
            not_before=T2,
        ),
    ]
    state = one_by_one([*waiting, TaskFailed(at=T1, task_id=ID, error="exited 1")])
    assert state.waiting(ID) and state.tasks[ID].state == State.SCHEDULED
    (quarantine,) = out_of_bounds(state.tasks.values(), T2)
    apply(state, quarantine)
    assert state.tasks[ID].state == State.FAILED and ID not in state.restarts
    assert state.tasks[ID].error.startswith(QUARANTINED)


# -- placement: total on any task ---------------------------------------------------------------

EXTREME = [1e308, math.inf, math.nan, 1e299, 1024.5]


@pytest.mark.parametrize("cpu", EXTREME, ids=str)
@pytest.mark.parametrize("policy", POLICIES)
def test_placement_refuses_a_cpu_beyond_the_bounds_with_a_reason(cpu: float, policy: str) -> None:
    """Before: OverflowError (1e308, inf), ValueError (NaN) or a 300-digit sum in `nano_cpus`,
    from the scheduler actor, at every start."""
    task = Task(id="t", cpu=cpu, driver="process")
    nodes = [NODE, NodeInfo(name="bare", address="x", drivers=("process",))]  # no stats
    want = "asks for more CPU than a task may (at most 1024 cores)"
    assert choose(policy, task, nodes, {}) == ("", want, -1)
    assert Placer(policy, nodes).place(task) == ("", want, -1)
    assert nano_cpus(cpu) == TOO_MUCH_CPU


def test_placement_counts_odd_values_without_raising() -> None:
    """Allocations and node views over tasks placed before the bounds existed (as an older
    log has them), and scores for nodes reporting any number."""
    odd = [
        Task(id="a", cpu=math.inf, memory=2**63, node="w1", state=State.RUNNING),
        Task(id="b", cpu=-2.0, memory=-5, disk=-1, node="w1", state=State.SCHEDULED),
        Task(id="c", cpu=math.nan, node="w1", state=State.RUNNING),
    ]
    a = allocations(odd)["w1"]
    assert (a.cpu, a.tasks) == (2 * TOO_MUCH_CPU, 3)
    state = ClusterState(tasks={t.id: t for t in odd}, nodes={"w1": NODE})
    (view,) = node_views(state)
    assert view.task_count == 3
    assert need_of(odd[1]) == ("", 0, 0, 0)
    huge = NodeInfo(name="h", address="x", drivers=("process",), cores=10**30, memory=-(2**63))
    for scorer in (epvm_cost, fit_slack):
        _, score = scorer(need_of(Task(cpu=1.0, memory=1)), huge, 0, 0, 0)
        assert not math.isnan(score)
    reason = choose("epvm", Task(id="t", memory=1 << 40, driver="process"), [huge], {}).reason
    assert reason == "1 node: 1 lacks memory (need 1024 GiB, most free 0 B)"


# -- decisions: total on any time ---------------------------------------------------------------


@pytest.mark.parametrize("at", ["not a time", "9999-12-31T23:59:59+00:00"])
def test_a_restart_from_an_end_time_orc_cannot_count_from_is_not_made(at: str) -> None:
    """Before: ValueError or OverflowError from `decide.review` (the manager crashed on the
    worker's report, and again on the next)."""
    task = Task(id=ID, cmd=["false"], driver="process", restart_policy="always")
    state = one_by_one(started(task))
    exit_ = TaskExited(at=at, task_id=ID, node="w1", exit_code=1, error="exit status 1")
    decision = decide.review(state, decide.exited(state, exit_))
    (event,) = decision.events
    assert isinstance(event, TaskExited)
    assert event.error == (
        f"exit status 1; not restarted: its end time {at!r} is not a time orc can count from"
    )
    apply(state, event)
    assert state.tasks[ID].state == State.FAILED


def test_a_run_whose_start_orc_cannot_read_restarts_as_a_short_one() -> None:
    """Before: ValueError from `decide.review` on the task's own recorded start."""
    task = Task(id=ID, cmd=["false"], driver="process", restart_policy="always")
    events = started(task)
    events[-1] = TaskStarted(at="yesterday", task_id=ID, node="w1")
    state = one_by_one(events)
    exit_ = TaskExited(at=T2, task_id=ID, node="w1", exit_code=1)
    restart, _ = decide.review(state, decide.exited(state, exit_)).events
    assert isinstance(restart, TaskRestarting) and restart.streak == 1


@pytest.mark.parametrize("retention", [1e12, math.inf, math.nan])
def test_a_purge_with_a_retention_past_all_dates_forgets_nothing(retention: float) -> None:
    """Before: OverflowError (the date before year 1) or ValueError (NaN seconds)."""
    state = one_by_one([*started(), TaskExited(at=T1, task_id=ID, node="w1", exit_code=0)])
    assert decide.purge(state, Purge(now=T2, retention=retention)).events == []
    assert decide.purge(state, Purge(now=T2, retention=0)).events != []


def test_restart_state_is_kept_by_a_legal_failure() -> None:
    """Only a quarantine forgets the streak: an ordinary failure keeps it for the backoff."""
    state = one_by_one(started(Task(id=ID, cmd=["x"], driver="process", restart_policy="always")))
    state.restarts[ID] = RestartState(2, T0, waiting=False)
    apply(state, TaskFailed(at=T1, task_id=ID, error="lost"))
    assert state.restarts[ID].streak == 2
