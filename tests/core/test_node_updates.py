"""The pure parts of separate manager and worker processes: worker sequence numbers, a node
going down and coming back, what GET /nodes shows."""

from __future__ import annotations

import msgspec
import pytest

from orc.core import decide
from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskLost,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
)
from orc.core.messages import Join, NodeSilent, Place
from orc.core.model import NodeInfo, State, Task
from orc.core.nodeview import node_views
from orc.core.snapshot import decode_state, encode_state, state_digest
from orc.core.state import ClusterState, apply, replay

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-01-01T00:00:01+00:00"
A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"
W1 = NodeInfo(name="w1", address="127.0.0.1:1", drivers=("process",), cores=4, memory=1 << 30)
W2 = NodeInfo(name="w2", address="127.0.0.1:2", drivers=("process",), cores=4, memory=1 << 30)


def _task(task_id: str, **changes: object) -> Task:
    base = Task(id=task_id, name="t", cmd=["sleep", "9"], driver="process", created_at=T0)
    return msgspec.structs.replace(base, **changes)


def _cluster(policy: str = "") -> ClusterState:
    """A on w1 Running (through worker seq 1), B on w1 Scheduled."""
    return replay(
        [
            NodeJoined(at=T0, node=W1),
            NodeJoined(at=T0, node=W2),
            TaskSubmitted(at=T0, task=_task(A, restart_policy=policy, memory=1000)),
            TaskSubmitted(at=T0, task=_task(B, cpu=0.5)),
            TaskScheduled(at=T0, task_id=A, node="w1"),
            TaskScheduled(at=T0, task_id=B, node="w1"),
            TaskStarted(at=T0, task_id=A, node="w1", worker_seq=1),
        ]
    )


def _apply_all(state: ClusterState, decision: decide.Decision) -> list[AnyEvent]:
    for event in decision.events:
        apply(state, event)
    return decision.events


def _ignored(decision: decide.Decision) -> str:
    """What the manager would log about a decision that must log no event and give no reply."""
    assert (decision.events, decision.reply) == ([], None)
    return "\n".join(note.text for note in decision.notes)


def test_worker_seq_is_recorded_and_a_repeat_or_a_step_back_is_ignored() -> None:
    state = _cluster()
    assert state.node_seqs == {"w1": 1}
    start_b = TaskStarted(at=T1, task_id=B, node="w1", worker_seq=2)
    _apply_all(state, decide.started(state, start_b))
    assert state.node_seqs == {"w1": 2}
    before = encode_state(state)
    # The same update again (a reconnect), and an older one (a seq going backwards).
    assert "worker seq 2, and 2 was applied already" in _ignored(decide.started(state, start_b))
    exit_a = TaskExited(at=T1, task_id=A, node="w1", exit_code=0, worker_seq=1)
    assert "worker seq 1, and 2 was applied already" in _ignored(decide.exited(state, exit_a))
    assert encode_state(state) == before
    # In one process updates carry no seq (0) and are applied by state alone.
    _apply_all(state, decide.exited(state, msgspec.structs.replace(exit_a, worker_seq=0)))
    assert state.tasks[A].state == State.COMPLETED and state.node_seqs == {"w1": 2}


def test_update_for_an_unknown_task_is_ignored_with_a_log_line() -> None:
    state = _cluster()
    before = encode_state(state)
    ghost = "00000000-0000-4000-8000-0000000000ff"
    said = _ignored(decide.exited(state, TaskExited(at=T1, task_id=ghost, node="w1", worker_seq=5)))
    assert f"unknown task {ghost} from node w1" in said
    said = _ignored(decide.started(state, TaskStarted(at=T1, task_id=A, node="w2", worker_seq=1)))
    assert "it is placed on 'w1'" in said
    assert encode_state(state) == before


def test_lost_task_logs_the_worker_update_then_fails() -> None:
    state = _cluster()
    lost = TaskLost(at=T1, task_id=A, node="w1", error="lost: no trace", worker_seq=2)
    marker, failed = _apply_all(state, decide.lost(state, lost))
    assert marker == lost and isinstance(failed, TaskFailed)
    assert state.tasks[A].state == State.FAILED and state.node_seqs["w1"] == 2
    assert "worker seq 2, and 2 was applied already" in _ignored(decide.lost(state, lost))


def test_silent_node_goes_down_and_its_tasks_fail_naming_it() -> None:
    state = _cluster()
    reason = "no heartbeat for 10.0 s"
    events = _apply_all(state, decide.node_down(state, NodeSilent("w1", reason, T1)))
    assert isinstance(events[0], NodeDown)
    assert [type(e) for e in events[1:]] == [TaskFailed, TaskFailed]
    for task_id in (A, B):
        assert state.tasks[task_id].state == State.FAILED
        assert state.tasks[task_id].error == f"node w1 lost: {reason}"
    assert state.down == {"w1": reason}
    assert [n.name for n in state.up_nodes()] == ["w2"]
    # Once is enough; an unknown node is no node.
    assert _ignored(decide.node_down(state, NodeSilent("w1", reason, T1))) == ""
    assert _ignored(decide.node_down(state, NodeSilent("w9", reason, T1))) == ""
    # Nothing is placed on a down node.
    pending = _task("00000000-0000-4000-8000-00000000000c")
    apply(state, TaskSubmitted(at=T1, task=pending))
    assert "on node w1: it is down" in _ignored(
        decide.place(state, Place(pending.id, "w1", "", T1))
    )
    # It comes back with the same NodeInfo: that is a join again.
    [joined] = _apply_all(state, decide.join(state, Join(W1, T1)))
    assert isinstance(joined, NodeJoined) and state.down == {}
    assert _ignored(decide.join(state, Join(W1, T1))) == ""


@pytest.mark.parametrize("policy, again", [("", False), ("no", False), ("always", True)])
def test_task_of_a_lost_node_restarts_only_when_its_policy_allows(policy: str, again: bool) -> None:
    """Node loss is a failure like any other: the restart policy decides (`decide.review`)."""
    state = _cluster(policy)
    _apply_all(state, decide.review(state, decide.node_down(state, NodeSilent("w1", "gone", T1))))
    task = state.tasks[A]
    if again:
        assert task.state == State.SCHEDULED and state.waiting(A)
        assert task.restart_count == 1
    else:
        assert task.state == State.FAILED and task.error.startswith("node w1 lost:")
    # The scheduler cannot place it again behind the policy's back.
    assert _ignored(decide.place(state, Place(A, "w2", "", T1))) == ""
    # The old worker's late exit report no longer touches it.
    late = TaskExited(at=T1, task_id=A, node="w1", exit_code=0, worker_seq=9)
    reviewed = decide.review(state, decide.exited(state, late))
    assert reviewed.events == []
    if again:
        assert [n.text for n in reviewed.notes] == [
            f"ignoring TaskExited for task {A}: it waits to restart"
        ]


def test_node_views_and_snapshots_keep_seqs_and_down_nodes() -> None:
    state = _cluster()
    _apply_all(state, decide.node_down(state, NodeSilent("w2", "gone", T1)))
    views = {v.name: v for v in node_views(state)}
    assert views["w1"].state == "up" and views["w2"].state == "down"
    assert views["w2"].reason == "gone"
    assert views["w1"].task_count == 2
    assert views["w1"].allocated.cpu == 0.5 and views["w1"].allocated.memory == 1000
    assert views["w2"].task_count == 0
    wire = msgspec.json.decode(msgspec.json.encode(views["w1"]))
    assert set(wire) >= {
        "Name",
        "Address",
        "State",
        "Drivers",
        "Cores",
        "Memory",
        "Disk",
        "Allocated",
        "TaskCount",
        "LastHeartbeat",
    }
    copy = decode_state(encode_state(state))
    assert copy.node_seqs == {"w1": 1} and copy.down == {"w2": "gone"}
    assert state_digest(copy) == state_digest(state)
    assert state_digest(copy) != state_digest(_cluster())
