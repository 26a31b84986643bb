"""Placement policy, in the book's three steps: select candidates, score them, pick one.

Pure functions: the scheduler actor owns the cursor and calls these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from orc.model import NodeInfo, Task


def select_candidates(task: Task, nodes: Sequence[NodeInfo]) -> tuple[list[NodeInfo], str]:
    """The nodes that can run `task`, and when there are none, why not (summed per reason)."""
    if not nodes:
        return [], "no worker nodes have joined yet"
    fit: list[NodeInfo] = []
    reasons: Counter[str] = Counter()
    for node in nodes:
        if task.driver not in node.drivers:
            reasons[f"driver {task.driver}"] += 1
        else:
            fit.append(node)
    if fit:
        return fit, ""
    return [], _summary(len(nodes), reasons)


def _summary(total: int, reasons: Counter[str]) -> str:
    parts = [f"{n} {'lacks' if n == 1 else 'lack'} {why}" for why, n in reasons.most_common()]
    return f"{total} node{'s' if total != 1 else ''}: {', '.join(parts)}"


def pick_round_robin(candidates: Sequence[NodeInfo], cursor: int) -> tuple[NodeInfo, int]:
    """The candidate after the last one picked; returns it and the new cursor."""
    cursor = (cursor + 1) % len(candidates)
    return candidates[cursor], cursor
