"""The pure core: transitions, apply, decisions and placement, as plain functions."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from orc.core import decide
from orc.core.events import (
    NodeJoined,
    TaskExited,
    TaskFailed,
    TaskLost,
    TaskScheduled,
    TaskStarted,
    TaskStopRequested,
    TaskSubmitted,
    TaskUnplaced,
)
from orc.core.jobspec import JobSpec, TemplateSpec
from orc.core.messages import Healthy, Join, Place, ScaleJob, Stop, Submit, SubmitJob
from orc.core.model import NodeInfo, State, Task, TaskEvent, for_wire
from orc.core.placement import choose, select_candidates
from orc.core.state import ClusterState, apply, replay
from orc.core.transitions import LEGAL, is_legal

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-01-01T00:00:01+00:00"
ID = "266592cd-960d-4091-981c-8c25c44b1018"
NODE = NodeInfo(name="w1", address="localhost:1", drivers=("process",))

EXPECTED_LEGAL = {
    (State.PENDING, State.SCHEDULED),
    (State.PENDING, State.FAILED),
    (State.SCHEDULED, State.RUNNING),
    (State.SCHEDULED, State.FAILED),
    (State.SCHEDULED, State.COMPLETED),
    (State.RUNNING, State.COMPLETED),
    (State.RUNNING, State.FAILED),
    (State.RUNNING, State.SCHEDULED),
    (State.FAILED, State.SCHEDULED),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(State, State)))
def test_every_transition_is_legal_exactly_when_the_table_says(src: State, dst: State) -> None:
    assert is_legal(src, dst) == ((src, dst) in EXPECTED_LEGAL)


def test_completed_is_final() -> None:
    assert LEGAL[State.COMPLETED] == frozenset()


def _task(**changes: object) -> Task:
    base = Task(id=ID, name="t", cmd=["true"], driver="process", created_at=T0, updated_at=T0)
    return msgspec.structs.replace(base, **changes)


def _running_state() -> ClusterState:
    return replay(
        [
            NodeJoined(at=T0, node=NODE),
            TaskSubmitted(at=T0, task=_task()),
            TaskScheduled(at=T0, task_id=ID, node="w1"),
            TaskStarted(at=T1, task_id=ID, node="w1"),
        ]
    )


def test_apply_walks_a_task_through_its_life() -> None:
    state = _running_state()
    task = state.tasks[ID]
    assert task.state == State.RUNNING
    assert task.node == "w1"
    assert task.starts_at == T1
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=0))
    assert state.tasks[ID].state == State.COMPLETED
    assert state.tasks[ID].finished_at == T1
    assert state.tasks[ID].exit_code == 0


def test_nonzero_exit_fails_with_code_and_reason() -> None:
    state = _running_state()
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=3, error="exited with 3"))
    task = state.tasks[ID]
    assert (task.state, task.exit_code, task.error) == (State.FAILED, 3, "exited with 3")


def test_stopped_task_ends_completed_even_when_killed() -> None:
    state = _running_state()
    apply(state, TaskStopRequested(at=T1, task_id=ID))
    assert ID in state.stop_requested
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=143, stopped=True))
    assert state.tasks[ID].state == State.COMPLETED
    assert ID not in state.stop_requested


def test_stop_of_pending_task_fails_it_with_a_reason() -> None:
    state = replay([TaskSubmitted(at=T0, task=_task())])
    apply(state, TaskStopRequested(at=T1, task_id=ID))
    assert state.tasks[ID].state == State.FAILED
    assert "before it was placed" in state.tasks[ID].error


def test_apply_refuses_an_illegal_transition() -> None:
    state = _running_state()
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=0))
    # refused without raising (issue 13: a total core): the task is quarantined, Failed
    apply(state, TaskStarted(at=T1, task_id=ID, node="w1"))
    assert state.tasks[ID].state == State.FAILED
    assert state.tasks[ID].error == (
        "quarantined: TaskStarted refused: illegal transition Completed -> Running"
    )
    assert state.quarantined[ID].kind == "illegal-transition"


def test_unplaced_keeps_task_pending_with_reason() -> None:
    state = replay([TaskSubmitted(at=T0, task=_task())])
    apply(state, TaskUnplaced(at=T1, task_id=ID, reason="1 node: 1 lacks driver docker"))
    assert state.tasks[ID].state == State.PENDING
    assert state.tasks[ID].error == "1 node: 1 lacks driver docker"


def test_apply_does_not_change_tasks_already_handed_out() -> None:
    state = _running_state()
    before = state.tasks[ID]
    apply(state, TaskFailed(at=T1, task_id=ID, error="lost"))
    assert before.state == State.RUNNING
    assert state.tasks[ID].state == State.FAILED


# -- decisions --------------------------------------------------------------------------------


def _submit(task: Task, state: int = 2) -> Submit:
    return Submit(TaskEvent(id=task.id, state=state, task=task), T0)


def test_submit_records_a_pending_task_and_ignores_client_owned_fields() -> None:
    events, reply, _ = decide.submit(ClusterState(), _submit(_task(state=State.RUNNING, node="x")))
    assert reply is not None and reply.status == 201
    [event] = events
    assert isinstance(event, TaskSubmitted)
    assert event.task.state == State.PENDING
    assert event.task.node == ""
    assert event.task.created_at == T0


def test_submit_same_spec_is_idempotent_other_spec_conflicts() -> None:
    state = _running_state()
    events, reply, _ = decide.submit(state, _submit(_task()))
    assert events == [] and reply is not None and reply.status == 200
    assert reply.event is not None and reply.event.task is not None
    assert reply.event.task.state == State.RUNNING
    events, reply, _ = decide.submit(state, _submit(_task(cmd=["false"])))
    assert events == [] and reply is not None and reply.status == 409
    assert ID in reply.message


def test_submit_with_state_3_is_a_stop() -> None:
    events, reply, _ = decide.submit(_running_state(), _submit(_task(), state=3))
    assert [type(e) for e in events] == [TaskStopRequested]
    assert reply is not None and reply.status == 204


def test_stop_unknown_is_404_and_a_repeated_stop_is_asked_again_until_the_task_ends() -> None:
    """A stop its node never confirmed (the order or the task was lost) is sent again when the
    client asks again; once the task has ended, a stop changes nothing."""
    _, reply, _ = decide.stop(ClusterState(), Stop(ID, T0))
    assert reply is not None and reply.status == 404
    state = _running_state()
    events = decide.stop(state, Stop(ID, T0)).events
    for event in events:
        apply(state, event)
    again, reply, _ = decide.stop(state, Stop(ID, T1))
    assert again == [TaskStopRequested(at=T1, task_id=ID)]
    assert reply is not None and reply.status == 204
    for event in again:
        apply(state, event)
    assert ID in state.stop_requested and state.tasks[ID].state == State.RUNNING
    apply(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=0, stopped=True))
    ended, reply, _ = decide.stop(state, Stop(ID, T1))
    assert ended == [] and reply is not None and reply.status == 204


def test_updates_from_the_wrong_node_or_for_unknown_tasks_are_ignored() -> None:
    state = _running_state()
    assert decide.exited(state, TaskExited(at=T1, task_id=ID, node="w2", exit_code=0)).events == []
    other = "00000000-0000-0000-0000-000000000000"
    assert decide.started(state, TaskStarted(at=T1, task_id=other, node="w1")).events == []
    # A duplicate start is not applied twice.
    assert decide.started(state, TaskStarted(at=T1, task_id=ID, node="w1")).events == []


def test_exit_after_stop_request_is_marked_stopped() -> None:
    state = _running_state()
    apply(state, TaskStopRequested(at=T1, task_id=ID))
    [event] = decide.exited(state, TaskExited(at=T1, task_id=ID, node="w1", exit_code=143)).events
    assert isinstance(event, TaskExited) and event.stopped


def test_lost_task_fails_but_a_stopped_one_completes() -> None:
    state = _running_state()
    [event] = decide.lost(state, TaskLost(at=T1, task_id=ID, node="w1", error="lost: gone")).events
    assert isinstance(event, TaskFailed)
    apply(state, TaskStopRequested(at=T1, task_id=ID))
    [event] = decide.lost(state, TaskLost(at=T1, task_id=ID, node="w1", error="lost: gone")).events
    assert isinstance(event, TaskExited) and event.stopped


def test_place_only_pending_tasks_on_known_nodes_and_reasons_only_once() -> None:
    state = replay([NodeJoined(at=T0, node=NODE), TaskSubmitted(at=T0, task=_task())])
    assert decide.place(state, Place(ID, "nope", "", T1)) == decide.nothing(
        decide.Note(f"scheduler placed task {ID} on unknown node nope", "warning")
    )
    [event] = decide.place(state, Place(ID, "", "no nodes", T1)).events
    apply(state, event)
    assert decide.place(state, Place(ID, "", "no nodes", T1)).events == []
    [event] = decide.place(state, Place(ID, "w1", "", T1)).events
    assert isinstance(event, TaskScheduled)
    apply(state, event)
    assert state.tasks[ID].error == ""
    assert decide.place(state, Place(ID, "w1", "", T1)).events == []


def test_join_logs_only_changes() -> None:
    state = ClusterState()
    [event] = decide.join(state, Join(NODE, T0)).events
    apply(state, event)
    assert decide.join(state, Join(NODE, T0)).events == []


# -- placement --------------------------------------------------------------------------------


def test_candidates_need_the_driver_and_reasons_are_summed() -> None:
    nodes = [NODE, msgspec.structs.replace(NODE, name="w2")]
    docker_task = _task(driver="docker", image="x")
    assert select_candidates(docker_task, nodes) == ([], "2 nodes: 2 lack driver docker")
    assert select_candidates(docker_task, [NODE]) == ([], "1 node: 1 lacks driver docker")
    assert select_candidates(_task(), []) == ([], "no worker nodes have joined yet")
    assert select_candidates(_task(), nodes)[0] == nodes


def test_round_robin_cycles() -> None:
    nodes = [msgspec.structs.replace(NODE, name=f"w{i}") for i in range(3)]
    cursor, picked = -1, []
    for _ in range(4):
        choice = choose("roundrobin", _task(), nodes, {}, cursor)
        cursor = choice.cursor
        picked.append(choice.node)
    assert picked == ["w0", "w1", "w2", "w0"]


def test_wire_names_are_the_seeds() -> None:
    body = msgspec.json.decode(msgspec.json.encode(for_wire(_task())))
    for key in (
        "ID",
        "ContainerID",
        "CPU",
        "ExposedPorts",
        "PortBindings",
        "RestartPolicy",
        "StartsAt",
        "FinishedAt",
        "HealthCheck",
        "RestartCount",
        "HostPorts",
        "CreatedAt",
        "UpdatedAt",
        "Cmd",
        "Env",
        "Driver",
        "Node",
        "ExitCode",
        "Error",
    ):
        assert key in body
    assert body["StateName"] == "Pending"
    assert body["State"] == 0


def test_submissions_past_the_limits_are_refused_with_a_time_to_retry() -> None:
    state = ClusterState()
    limits = decide.Limits(max_tasks=2, max_pending=1)
    first = decide.submit(state, _submit(_task()), limits, pending=0)
    assert first.reply is not None and first.reply.status == 201
    for event in first.events:
        apply(state, event)
    other = _task(id="11111111-2222-3333-4444-555555555555")
    waiting = decide.submit(state, _submit(other), limits, pending=1)
    assert waiting.events == [] and waiting.reply is not None
    assert (waiting.reply.status, waiting.reply.retry_after) == (429, 1.0)
    assert "ORC_MAX_PENDING" in waiting.reply.message
    # the same task again is answered as it is, whatever the load
    again = decide.submit(state, _submit(_task()), limits, pending=1)
    assert again.reply is not None and again.reply.status == 200
    full = decide.submit(state, _submit(other), decide.Limits(max_tasks=1), pending=0)
    assert full.events == [] and full.reply is not None
    assert (full.reply.status, full.reply.retry_after) == (503, 60.0)
    assert "ORC_MAX_TASKS" in full.reply.message


def test_a_first_passing_health_check_is_recorded_once_for_its_run() -> None:
    state = _running_state()
    task = next(iter(state.tasks.values()))
    assert task.starts_at is not None
    ok = Healthy(task.id, task.node, task.starts_at, "2026-01-01T00:00:09+00:00")
    first = decide.healthy(state, ok)
    assert [type(e).__name__ for e in first.events] == ["TaskHealthy"]
    for event in first.events:
        apply(state, event)
    assert state.checked[task.id] == (task.starts_at, "2026-01-01T00:00:09+00:00")
    assert decide.healthy(state, ok).events == []  # once per run
    other_run = Healthy(task.id, task.node, "2025-12-31T00:00:00+00:00", ok.now)
    elsewhere = Healthy(task.id, "another-node", task.starts_at, ok.now)
    unknown = Healthy("no-such-task", task.node, task.starts_at, ok.now)
    for late in (other_run, elsewhere, unknown):
        assert decide.healthy(state, late).events == []


def test_a_job_or_a_scale_past_the_task_limit_is_refused_as_a_task_is() -> None:
    """ORC_MAX_TASKS holds for jobs too: the tasks held now plus those a job would add to its
    live ones. A Count that fits is taken, and so is scaling down."""
    state = _running_state()  # one task held, of no job
    limits = decide.Limits(max_tasks=4)
    spec = JobSpec(id="web", count=3, task=TemplateSpec(cmd=["sleep", "9"]))
    fits = decide.register(state, SubmitJob(spec, T1), limits)
    assert fits.reply is not None and fits.reply.status == 201
    for event in fits.events:
        apply(state, event)
    bigger = msgspec.structs.replace(spec, id="api", count=4)
    full = decide.register(state, SubmitJob(bigger, T1), limits)
    assert full.events == [] and full.reply is not None
    assert (full.reply.status, full.reply.retry_after) == (503, 60.0)
    assert "orc holds 1 tasks and job api would add 4, past its limit of 4" in full.reply.message
    # the job has no task yet: its Count is what it would add
    refused = decide.scale(state, ScaleJob("web", 4, T1), limits)
    assert refused.events == [] and refused.reply is not None and refused.reply.status == 503
    assert decide.scale(state, ScaleJob("web", 2, T1), limits).events != []
