"""Hypothesis strategies for orc's events, tasks and commands: mostly plausible, often not.

A handful of task IDs and node names, so that generated events keep meeting the same tasks
(and a good share of them are illegal for the state they meet: a start after the end, a report
from another node, an event for a task never submitted). Values range over everything a log
can hold, not only what the edge lets in today: CPU of NaN, infinity or 1e308, negative and
64-bit memory, times that are not times. Integers stay within 64 bits: the log is msgpack.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from msgspec.structs import replace

from orc.core.events import (
    AnyEvent,
    NodeDown,
    NodeJoined,
    NodeLogReset,
    StateDigest,
    TaskExited,
    TaskFailed,
    TaskLost,
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
from orc.core.model import NodeInfo, State, Task

TASK_IDS = ("aaaaaaaa-0000-4000-8000-000000000001", "b", "c", "d")
NODES = ("n1", "n2", "n3")

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SMALL = st.integers(min_value=-3, max_value=40)
ints = st.one_of(SMALL, INT64)
floats = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 64.0, 1024.0, 1e308, -1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
# Times: mostly good ones a few seconds apart, sometimes the edges of datetime, sometimes none.
good_times = st.integers(min_value=0, max_value=86_399).map(
    lambda s: f"2026-11-28T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00"
)
times = st.one_of(
    good_times,
    good_times,
    st.sampled_from(
        ["", "not a time", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+14:00", "2026-13-45"]
    ),
)
task_ids = st.sampled_from(TASK_IDS)
nodes = st.one_of(st.sampled_from(NODES), st.sampled_from(["", "ghost"]))
texts = st.one_of(st.sampled_from(["", "exit status 1", "lost", "quarantined: x"]), st.text())
policies = st.sampled_from(["", "no", "on-failure", "always", "always", "unless-stopped", "x"])
drivers = st.sampled_from(["process", "docker", "", "qemu"])


def _strings(max_size: int = 3) -> st.SearchStrategy[list[str] | None]:
    return st.one_of(
        st.none(), st.lists(st.sampled_from(["true", "a\x00b", "X=1", "="]), max_size=max_size)
    )


tasks = st.builds(
    Task,
    id=task_ids,
    name=st.sampled_from(["", "web", "x" * 300]),
    state=st.sampled_from(list(State)),
    image=st.sampled_from(["", "busybox", "Not An Image!"]),
    cpu=floats,
    memory=ints,
    disk=ints,
    exposed_ports=st.one_of(st.none(), st.just({"80/tcp": {}}), st.just({"99999": {}})),
    port_bindings=st.one_of(st.none(), st.just({"80/tcp": "0"}), st.just({"80/tcp": "8080"})),
    restart_policy=policies,
    starts_at=st.one_of(st.none(), times),
    finished_at=st.one_of(st.none(), times),
    restart_count=ints,
    created_at=st.one_of(st.none(), times),
    updated_at=st.one_of(st.none(), times),
    cmd=_strings(),
    env=_strings(),
    driver=drivers,
    node=nodes,
    exit_code=st.one_of(st.none(), ints),
    error=texts,
)

node_infos = st.builds(
    NodeInfo,
    name=st.sampled_from(NODES),
    address=st.just("127.0.0.1:8888"),
    drivers=st.sampled_from([("process",), ("process", "docker"), ()]),
    cores=ints,
    memory=ints,
    disk=ints,
)


def _event(cls: type[Any], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[AnyEvent]:
    return st.builds(cls, at=times, **fields)


events: st.SearchStrategy[AnyEvent] = st.one_of(
    _event(TaskSubmitted, task=tasks),
    _event(TaskSubmitted, task=tasks.map(lambda t: _pending(t))),
    _event(TaskScheduled, task_id=task_ids, node=nodes),
    _event(TaskStarted, task_id=task_ids, node=nodes, container_id=texts, worker_seq=ints),
    _event(
        TaskExited,
        task_id=task_ids,
        node=nodes,
        exit_code=st.one_of(st.none(), ints),
        error=texts,
        stopped=st.booleans(),
        worker_seq=ints,
    ),
    _event(TaskStopRequested, task_id=task_ids),
    _event(TaskFailed, task_id=task_ids, error=texts),
    _event(TaskLost, task_id=task_ids, node=nodes, error=texts, worker_seq=ints),
    _event(
        TaskRestarting,
        task_id=task_ids,
        node=nodes,
        reason=texts,
        restart_count=ints,
        streak=ints,
        delay=floats,
        not_before=times,
        exit_code=st.one_of(st.none(), ints),
    ),
    _event(TaskRestarted, task_id=task_ids, node=nodes),
    _event(
        TaskUnhealthy,
        task_id=task_ids,
        node=nodes,
        reason=texts,
        failures=ints,
        stop=st.booleans(),
    ),
    _event(TaskPurged, task_id=task_ids, reason=texts),
    _event(TaskUnplaced, task_id=task_ids, reason=texts),
    _event(NodeJoined, node=node_infos),
    _event(NodeDown, node=nodes, reason=texts),
    _event(NodeLogReset, node=nodes, seq=ints, reason=texts),
    _event(StateDigest, seq=ints, digest=st.sampled_from(["", "00" * 16])),
)


def _pending(task: Task) -> Task:
    """A submission as a manager records it: Pending, on no node."""
    return replace(task, state=State.PENDING, node="", error="")


def _lifecycle(task: Task, node: str, at: str, steps: int) -> list[AnyEvent]:
    """The first `steps` events of a run that goes well: submitted, placed, started, exited."""
    task = _pending(task)
    run: list[AnyEvent] = [
        TaskSubmitted(at=at, task=task),
        TaskScheduled(at=at, task_id=task.id, node=node),
        TaskStarted(at=at, task_id=task.id, node=node),
        TaskExited(at=at, task_id=task.id, node=node, exit_code=1),
    ]
    return run[:steps]


lifecycles = st.builds(
    _lifecycle, tasks, st.sampled_from(NODES), times, st.integers(min_value=1, max_value=4)
)


def event_lists(max_size: int = 40) -> st.SearchStrategy[list[AnyEvent]]:
    """Nodes join and tasks get going (so that later events meet real states: running tasks,
    restart policies, waits), then anything happens, legal or not."""
    joins = st.tuples(*(st.one_of(st.none(), _JOINS[name]) for name in NODES))
    runs = st.lists(lifecycles, max_size=4).map(lambda runs: [e for run in runs for e in run])
    return st.tuples(joins, runs, st.lists(events, max_size=max_size)).map(
        lambda p: [*(e for e in p[0] if e is not None), *p[1], *p[2]]
    )


def _named(name: str) -> Any:
    return lambda node: replace(node, name=name)


_JOINS = {name: _event(NodeJoined, node=node_infos.map(_named(name))) for name in NODES}
