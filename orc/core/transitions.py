"""The legal task transitions: the seed's table plus the two restarts the book adds."""

from __future__ import annotations

from orc.core.model import State

LEGAL: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.SCHEDULED, State.FAILED}),
    State.SCHEDULED: frozenset({State.RUNNING, State.FAILED, State.COMPLETED}),
    State.RUNNING: frozenset({State.COMPLETED, State.FAILED, State.SCHEDULED}),
    State.FAILED: frozenset({State.SCHEDULED}),
    State.COMPLETED: frozenset(),
}

TERMINAL = frozenset({State.COMPLETED, State.FAILED})
ACTIVE = frozenset({State.SCHEDULED, State.RUNNING})


LEGAL_PAIRS = frozenset((src, dst) for src, dsts in LEGAL.items() for dst in dsts)


def is_legal(src: State, dst: State) -> bool:
    return (src, dst) in LEGAL_PAIRS


class IllegalTransition(Exception):
    """A transition the table forbids: a bug in whoever proposed it."""

    def __init__(self, task_id: str, src: State, dst: State) -> None:
        super().__init__(f"task {task_id}: illegal transition {src.label} -> {dst.label}")
        self.task_id = task_id
        self.src = src
        self.dst = dst
