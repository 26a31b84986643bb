"""Placement policy, in the book's three steps: select candidates, score them, pick one.

Everything here is pure (no I/O, no clock, no randomness), so a placement can be explained and
replayed. Two layers give the same answers:

- the reference pipeline, `select_candidates` -> `score` -> `pick` (and `choose`, which runs
  the three), plain functions over a node list and per-node allocations; it scores every node,
  which is what the book does and is O(nodes) per task;
- `Placer`, an incremental index the scheduler actor owns: it keeps allocations up to date as
  tasks are placed and end, and one heap of nodes per task shape ordered by score, so that a
  placement costs O(log nodes) instead of scoring every node. Tests check it against `choose`.

Policies (`ORC_SCHEDULER`):

- `roundrobin`: the seed's: the next node, after the last one picked, that can run the task.
- `epvm`: the book's E-PVM opportunity cost (lowest wins). For node n and task t, with
  L = 1.53960071783900203869 (Lieb's square ice constant) and MAX_JOBS = 4 (the book's)::

      cost = L**((mem_alloc + t.memory) / mem_total) - L**(mem_alloc / mem_total)
           + L**((cpu_alloc + t.cpu) / cores)       - L**(cpu_alloc / cores)
           + L**((tasks + 1) / MAX_JOBS)            - L**(tasks / MAX_JOBS)

  Allocations are what is placed and not finished (see `allocations`). CPU load is the cores
  reserved on the node over its cores: the book's term used a since-boot CPU sample that
  cancels out of its own formula; a reservation is exact, in the log, and does not lag a burst
  of placements. Exponents are capped at `EXP_CAP` so a node with thousands of tasks cannot
  overflow a float. A node that reports no memory or no cores ranks after every node that
  does (it never wins because its stats are missing).
- `fit`: best fit (bin packing): the node the task leaves with the least room, scored as the
  mean fraction of memory and CPU still free after placing it (lowest wins). Nodes without
  stats rank last, in node order.

All policies place only on nodes that pass the filter: the task's `Constraints` (see
`satisfies`), its driver, and enough memory, CPU and disk left given what is allocated (a task
needing 0 of a resource always fits it; a node reporting 0 capacity of a resource is not
checked for it). Ties go to the earlier node.

Spread: a task of a job (`job_id`) with `spread` set goes, among the nodes that pass the
filter, to one whose group holds the fewest of the job's Scheduled and Running tasks; the
policy decides between those. A node's group is its name for `spread == "node"`, else its value
of that attribute ("" when it has none), so `spread="rack"` over racks a, a, b puts half of the
job on the two nodes of rack a and half on the one of rack b. Spread is a preference, never a
filter: a full group does not stop a task from running elsewhere.

Every function here is total on any Task: the edge refuses a spec outside the bounds of
`orc.core.spec`, but a log an older orc wrote may hold one (a CPU of 1e308, NaN, a negative
memory), and placement must not raise on it (it would crash the scheduler, again at every
start). `need_of` saturates such a value just past its bound, and a task that asks for more
than any task may is placed nowhere, with the reason. Likewise a constraint the edge would
refuse (a regular expression that does not compile, an unknown operator) passes no node.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from orc.core.jobspec import ATTRIBUTE_PATTERN
from orc.core.model import Constraint, NodeInfo, State, Task
from orc.core.spec import MAX_BYTES, MAX_CPU, MAX_NAME

if TYPE_CHECKING:
    from orc.core.state import ClusterState

POLICIES = ("roundrobin", "epvm", "fit")
LIEB = 1.53960071783900203869
MAX_JOBS = 4.0
EXP_CAP = 1000.0
NANO = 1_000_000_000
PLACED_STATES = frozenset({State.SCHEDULED, State.RUNNING})
MAX_SHAPES = 16


CPU_LIMIT = MAX_CPU * NANO  # the most NanoCPUs a task may ask for
TOO_MUCH_CPU = CPU_LIMIT + 1  # what a task asking for more (or for NaN) counts as
TOO_MUCH_BYTES = MAX_BYTES + 1


def nano_cpus(cores: float) -> int:
    """Cores as Docker's NanoCPUs: integers, so sums and exact fits never drift.

    Total: a value outside [0, MAX_CPU] (only a log an older orc wrote can hold one) counts as
    nothing when negative and as just past the bound when larger, infinite or NaN; `round`
    would raise on the last two, and 1e308 cores would make every sum a 300-digit integer.
    """
    if 0.0 <= cores <= MAX_CPU:
        return round(cores * NANO)
    return 0 if cores < 0.0 else TOO_MUCH_CPU


def _bytes_needed(n: int) -> int:
    """Memory or disk a task asks for, within [0, MAX_BYTES + 1], as `nano_cpus` bounds CPU."""
    if 0 <= n <= MAX_BYTES:
        return n
    return 0 if n < 0 else TOO_MUCH_BYTES


# -- allocations ------------------------------------------------------------------------------


class Allocation(msgspec.Struct, frozen=True):
    """What is placed on a node and not finished: CPU in NanoCPUs, memory and disk in bytes."""

    cpu: int = 0
    memory: int = 0
    disk: int = 0
    tasks: int = 0


EMPTY = Allocation()


def allocations(tasks: Iterable[Task]) -> dict[str, Allocation]:
    """Per-node allocation of the tasks that are Scheduled or Running on a node."""
    sums: dict[str, list[int]] = {}
    for t in tasks:
        if t.node and t.state in PLACED_STATES:
            s = sums.setdefault(t.node, [0, 0, 0, 0])
            s[0] += nano_cpus(t.cpu)
            s[1] += _bytes_needed(t.memory)
            s[2] += _bytes_needed(t.disk)
            s[3] += 1
    return {node: Allocation(*s) for node, s in sums.items()}


def allocations_of(state: ClusterState) -> dict[str, Allocation]:
    """Allocations derived from the log's state, never from counters kept on the side."""
    return allocations(state.tasks.values())


JobCounts = Mapping[str, Mapping[str, int]]  # job ID -> node -> its Scheduled and Running tasks


def job_counts(tasks: Iterable[Task]) -> dict[str, dict[str, int]]:
    """Per job, per node: the job's tasks Scheduled or Running there (what spread evens out).
    By node, not by group: a group is a node attribute, and the nodes' attributes may change
    while the tasks stay where they are."""
    counts: dict[str, dict[str, int]] = {}
    for t in tasks:
        if t.job_id and t.node and t.state in PLACED_STATES:
            per_node = counts.setdefault(t.job_id, {})
            per_node[t.node] = per_node.get(t.node, 0) + 1
    return counts


# -- node attributes, constraints and spread --------------------------------------------------

NODE_ATTRIBUTE = "node"  # built in: the node's name, whatever the node declares
MAX_ATTRS = 64
MAX_ATTR_VALUE = MAX_NAME  # a constraint's value may be this long, so an attribute too
_ATTRIBUTE = re.compile(ATTRIBUTE_PATTERN)


def attrs_problem(attrs: Mapping[str, str]) -> str:
    """What is wrong with the attributes a node declares ("" when nothing), in words that name
    the attribute: the worker's flag and `POST /nodes` refuse them with it.

    Values have no comma so that `ORC_WORKER_ATTRS=rack=a,zone=z1` reads one way only."""
    if len(attrs) > MAX_ATTRS:
        return f"at most {MAX_ATTRS} attributes, got {len(attrs)}"
    for key, value in attrs.items():
        if not _ATTRIBUTE.match(key):
            return (
                f"attribute name {key!r}: 1 to 64 letters, digits, '_', '.' or '-',"
                " starting with a letter or '_'"
            )
        if key == NODE_ATTRIBUTE:
            return f"attribute {key!r} is built in (the node's name) and cannot be set"
        if len(value) > MAX_ATTR_VALUE or "\x00" in value or "," in value:
            return (
                f"attribute {key}: its value must be at most {MAX_ATTR_VALUE} characters,"
                f" without NUL or ',', got {value[:40]!r}"
            )
    return ""


def attribute(node: NodeInfo, name: str) -> str:
    """A node's value of attribute `name`: its name for `node`, "" for one it does not declare."""
    if name == NODE_ATTRIBUTE:
        return node.name
    return node.attrs.get(name, "") if node.attrs else ""


@functools.lru_cache(maxsize=256)
def _regexp(value: str) -> re.Pattern[str] | None:
    """`value` compiled, or None when it is not a regular expression (the edge refuses one, but
    an older orc's log may hold it): such a constraint matches no node."""
    try:
        return re.compile(value)
    except Exception:  # re.error, and RecursionError or OverflowError on pathological input
        return None


def satisfies(node: NodeInfo, constraint: Constraint) -> bool:
    """Whether `node` passes `constraint`; an operator this orc does not know passes no node."""
    have = attribute(node, constraint.attribute)
    match constraint.operator:
        case "=":
            return have == constraint.value
        case "!=":
            return have != constraint.value
        case "regexp":
            pattern = _regexp(constraint.value)
            return pattern is not None and pattern.fullmatch(have) is not None
    return False


def unfit(node: NodeInfo, driver: str, constraints: Iterable[Constraint]) -> str:
    """Why `node` can never run a task of `driver` under `constraints`, capacity aside; ""
    when it can. The one rule for a node's fitness to a task (placement filters with it in
    bulk, counting the reasons)."""
    if driver and driver not in node.drivers:
        return f"node {node.name} has no {driver} driver"
    for c in constraints:
        if not satisfies(node, c):
            return f"node {node.name} does not satisfy {c.attribute} {c.operator} {c.value!r}"
    return ""


def constraints_of(task: Task) -> tuple[Constraint, ...]:
    """The task's constraints, each once (a repeated one would be reported twice)."""
    return tuple(dict.fromkeys(task.constraints)) if task.constraints else ()


def spread_of(task: Task) -> str:
    """The attribute the task's job spreads over; "" for none (a task of no job has no
    siblings to spread from)."""
    return task.spread if task.job_id else ""


def spread_loads(spread: str, nodes: Sequence[NodeInfo], per_node: Mapping[str, int]) -> list[int]:
    """For each node, the job's tasks in its group (`per_node`: the job's tasks by node). Only
    listed nodes count: a node that is gone says nothing of its attributes."""
    if spread == NODE_ATTRIBUTE:
        return [per_node.get(n.name, 0) for n in nodes]
    groups = [attribute(n, spread) for n in nodes]
    sums: dict[str, int] = {}
    for n, group in zip(nodes, groups, strict=True):
        sums[group] = sums.get(group, 0) + per_node.get(n.name, 0)
    return [sums[group] for group in groups]


def _say(c: Constraint) -> str:
    """A constraint as the reasons say it: `rack = a`, `zone != ""`, `node regexp w[12]`."""
    value = c.value or '""'
    return f"{c.attribute} {c.operator} {value}"


# -- step 1: select ---------------------------------------------------------------------------


class Need(NamedTuple):
    """What a task asks of a node: its shape, the key under which the index caches scores."""

    driver: str
    cpu: int
    memory: int
    disk: int


def need_of(task: Task) -> Need:
    return Need(
        task.driver, nano_cpus(task.cpu), _bytes_needed(task.memory), _bytes_needed(task.disk)
    )


def beyond_bounds(need: Need) -> str:
    """Why no node may run `need` whatever it has: it asks for more than any task may (only a
    task from an older orc's log can); "" when it does not."""
    if need.cpu > CPU_LIMIT:
        return f"asks for more CPU than a task may (at most {MAX_CPU} cores)"
    pib = f"{MAX_BYTES / (1 << 50):g} PiB"
    if need.memory > MAX_BYTES:
        return f"asks for more memory than a task may (at most {pib})"
    if need.disk > MAX_BYTES:
        return f"asks for more disk than a task may (at most {pib})"
    return ""


# Why a node cannot run a task; the order in which they are checked and, for ties, reported.
# A failed constraint is checked before these: it is `CONSTRAINT + k` for the task's k-th.
DRIVER, MEMORY, CPU, DISK = 0, 1, 2, 3
CONSTRAINT = 4


def lack(need: Need, node: NodeInfo, cpu: int, memory: int, disk: int) -> int:
    """The first thing `node` lacks to run `need` on top of what is allocated, or -1."""
    if need.driver not in node.drivers:
        return DRIVER
    if need.memory and node.memory and memory + need.memory > node.memory:
        return MEMORY
    if need.cpu and node.cores and cpu + need.cpu > node.cores * NANO:
        return CPU
    if need.disk and node.disk and disk + need.disk > node.disk:
        return DISK
    return -1


def _fits(constraints: tuple[Constraint, ...], need: Need, node: NodeInfo, a: Allocation) -> int:
    """Why `node` cannot run the task (`CONSTRAINT + k`, or what it lacks), or -1 if it can."""
    for k, c in enumerate(constraints):
        if not satisfies(node, c):
            return CONSTRAINT + k
    return lack(need, node, a.cpu, a.memory, a.disk)


def reason(
    need: Need,
    nodes: Sequence[NodeInfo],
    alloc: Sequence[Allocation],
    constraints: tuple[Constraint, ...] = (),
) -> str:
    """Why no node can run `need`, summed per reason, most common first (ties in the order
    checked: constraints, then driver, memory, CPU, disk).

    e.g. `3 nodes: 2 fail constraint rack = a, 1 lacks memory (need 512 MiB, most free 0 B)`.
    """
    if not nodes:
        return "no worker nodes have joined yet"
    counts: dict[int, int] = {}
    most_free = [0, 0, 0, 0]
    for node, a in zip(nodes, alloc, strict=True):
        why = _fits(constraints, need, node, a)
        if why < 0:
            continue
        counts[why] = counts.get(why, 0) + 1
        if why in (MEMORY, CPU, DISK):
            free = {
                MEMORY: node.memory - a.memory,
                CPU: node.cores * NANO - a.cpu,
                DISK: node.disk - a.disk,
            }[why]
            most_free[why] = max(most_free[why], free)
    mem, cpu, disk = most_free[MEMORY], most_free[CPU], most_free[DISK]
    text = {
        DRIVER: f"driver {need.driver}",
        MEMORY: f"memory (need {_bytes(need.memory, up=True)}, most free {_bytes(mem)})",
        CPU: f"CPU (need {_cores(need.cpu, up=True)}, most free {_cores(cpu)})",
        DISK: f"disk (need {_bytes(need.disk, up=True)}, most free {_bytes(disk)})",
    }
    parts = []
    for k in sorted(counts, key=lambda k: (-counts[k], k < CONSTRAINT, k)):
        n = counts[k]
        if k >= CONSTRAINT:
            said = _say(constraints[k - CONSTRAINT])
            parts.append(f"{n} {'fails' if n == 1 else 'fail'} constraint {said}")
        else:
            parts.append(f"{n} {'lacks' if n == 1 else 'lack'} {text[k]}")
    total = len(nodes)
    return f"{total} node{'s' if total != 1 else ''}: {', '.join(parts)}"


_SAY_AT_MOST = 1 << 80  # a node may report anything: amounts past this are said as this


def _bytes(n: int, up: bool = False) -> str:
    n = min(n, _SAY_AT_MOST)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{_num(n / size, up)} {unit}"
    return f"{max(n, 0)} B"


def _cores(nanos: int, up: bool = False) -> str:
    text = _num(min(max(nanos, 0), _SAY_AT_MOST) / NANO, up)
    return f"{text} core{'' if text == '1' else 's'}"


def _num(x: float, up: bool) -> str:
    """Two decimals at most, rounded away from the truth's side: a need rounds up and a free
    amount down, so the numbers never suggest the task fits."""
    rounded = (math.ceil if up else math.floor)(round(x * 100, 6)) / 100
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def _alloc_list(nodes: Sequence[NodeInfo], allocated: Mapping[str, Allocation]) -> list[Allocation]:
    return [allocated.get(n.name, EMPTY) for n in nodes]


def select(
    task: Task, nodes: Sequence[NodeInfo], allocated: Mapping[str, Allocation]
) -> tuple[list[int], str]:
    """Step 1: the positions of the nodes that can run `task`, and if none, why not."""
    need = need_of(task)
    if too_much := beyond_bounds(need):
        return [], too_much
    cs = constraints_of(task)
    alloc = _alloc_list(nodes, allocated)
    fit = [
        i for i, (n, a) in enumerate(zip(nodes, alloc, strict=True)) if _fits(cs, need, n, a) < 0
    ]
    return fit, ("" if fit else reason(need, nodes, alloc, cs))


def select_candidates(
    task: Task, nodes: Sequence[NodeInfo], allocated: Mapping[str, Allocation] | None = None
) -> tuple[list[NodeInfo], str]:
    """The nodes that can run `task`, and when there are none, why not (summed per reason)."""
    fit, why = select(task, nodes, allocated or {})
    return [nodes[i] for i in fit], why


# -- step 2: score ----------------------------------------------------------------------------

Key = tuple[int, float]  # (1 if the node's stats are missing else 0, score); lowest wins


def _lieb(x: float) -> float:
    power: float = LIEB ** (x if x < EXP_CAP else EXP_CAP)  # typeshed: float ** float is Any
    return power


_task_terms: dict[int, float] = {}


def _task_term(tasks: int) -> float:
    """L**((tasks + 1) / MAX_JOBS) - L**(tasks / MAX_JOBS), memoised: it is all a placement
    of a task asking nothing costs, and the index computes it for every push."""
    term = _task_terms.get(tasks)
    if term is None:
        term = _task_terms[tasks] = _lieb((tasks + 1) / MAX_JOBS) - _lieb(tasks / MAX_JOBS)
    return term


def epvm_cost(need: Need, node: NodeInfo, cpu: int, memory: int, tasks: int) -> Key:
    """The E-PVM opportunity cost of placing `need` on `node` (formula in the module doc)."""
    cost = _task_term(tasks)
    missing = 0
    total = node.memory
    if total > 0:
        if need.memory:
            cost += _lieb((memory + need.memory) / total) - _lieb(memory / total)
    else:
        missing = 1
    total = node.cores * NANO
    if total > 0:
        if need.cpu:
            cost += _lieb((cpu + need.cpu) / total) - _lieb(cpu / total)
    else:
        missing = 1
    return (missing, cost)


def fit_slack(need: Need, node: NodeInfo, cpu: int, memory: int, tasks: int) -> Key:
    """Best fit: the mean fraction of memory and CPU left free after placing `need`."""
    if node.memory <= 0 or node.cores <= 0:
        return (1, 0.0)
    total = node.cores * NANO
    free_mem = (node.memory - memory - need.memory) / node.memory
    free_cpu = (total - cpu - need.cpu) / total
    return (0, (free_mem + free_cpu) / 2)


SCORERS = {"epvm": epvm_cost, "fit": fit_slack}


def score(
    policy: str, task: Task, candidates: Sequence[NodeInfo], allocated: Mapping[str, Allocation]
) -> list[Key]:
    """Step 2: one key per candidate, lowest best. Round robin scores nothing."""
    if policy == "roundrobin":
        return [(0, 0.0)] * len(candidates)
    scorer, need = SCORERS[policy], need_of(task)
    keys = []
    for node in candidates:
        a = allocated.get(node.name, EMPTY)
        keys.append(scorer(need, node, a.cpu, a.memory, a.tasks))
    return keys


# -- step 3: pick -----------------------------------------------------------------------------


def pick(candidates: Sequence[NodeInfo], keys: Sequence[Key]) -> NodeInfo:
    """Step 3: the lowest key; the earlier node on a tie."""
    best = min(range(len(candidates)), key=lambda i: (keys[i], i))
    return candidates[best]


class Choice(NamedTuple):
    node: str  # "" when no node can run the task
    reason: str
    cursor: int  # round robin: position in the node list of the last node picked


def choose(
    policy: str,
    task: Task,
    nodes: Sequence[NodeInfo],
    allocated: Mapping[str, Allocation],
    cursor: int = -1,
    jobs: JobCounts | None = None,
) -> Choice:
    """The three steps for one task, scoring every node: the reference `Placer` must match.

    `jobs` (see `job_counts`) is where the task's siblings are, for spread; without it the
    task is placed as if its job had nothing placed yet."""
    fit, why = select(task, nodes, allocated)
    if not fit:
        return Choice("", why, cursor)
    spread = spread_of(task)
    per_node = jobs.get(task.job_id) if spread and jobs else None
    if per_node:  # spread first: only the least loaded groups' nodes go on to the policy
        loads = spread_loads(spread, nodes, per_node)
        least = min(loads[i] for i in fit)
        fit = [i for i in fit if loads[i] == least]
    if policy == "roundrobin":
        after = [i for i in fit if i > cursor]
        i = after[0] if after else fit[0]
        return Choice(nodes[i].name, "", i)
    candidates = [nodes[i] for i in fit]
    return Choice(pick(candidates, score(policy, task, candidates, allocated)).name, "", cursor)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown scheduler {policy!r}: use one of {', '.join(POLICIES)}")
    return policy


# -- the incremental index --------------------------------------------------------------------


class _Placed(NamedTuple):
    node: str
    need: Need
    job: str = ""


class Placer:
    """Nodes, their allocations and per-shape score heaps, kept up to date incrementally.

    Why heaps per shape: a node's score depends on the task only through its shape (driver,
    CPU, memory, disk), and placing a task changes the score of one node only. So for each
    recent shape we keep a heap of `(key, position, version)` for the nodes that fit it; a
    placement or an end pushes the changed node's fresh entry, and stale entries (an older
    version) are dropped when they reach the top. Only the `MAX_SHAPES` most recent shapes are
    kept; an evicted shape is rebuilt in O(nodes) when it comes back.

    A task with constraints, or whose job spreads, does not fit that scheme: which nodes may
    take it, and which are best, depend on more than its shape. It goes through `choose` over
    the index's own allocations and `jobs` (the job's tasks per node, kept as tasks are placed
    and end), O(nodes) per task; plain tasks keep the heaps.
    """

    def __init__(
        self, policy: str = "epvm", nodes: Sequence[NodeInfo] = (), placed: Iterable[Task] = ()
    ) -> None:
        self.policy = check_policy(policy)
        self.placed: dict[str, _Placed] = {}
        self.jobs: dict[str, dict[str, int]] = {}
        self.cursor = -1
        for task in placed:
            if task.node:
                self.placed[task.id] = _Placed(task.node, need_of(task), task.job_id)
        for p in self.placed.values():
            self._count_job(p, 1)
        self.set_nodes(nodes)

    # nodes and allocations

    def set_nodes(self, nodes: Sequence[NodeInfo]) -> None:
        """The node list changed: rebuild allocations from what is placed (O(tasks + nodes))."""
        self.nodes = list(nodes)
        self.pos = {n.name: i for i, n in enumerate(self.nodes)}
        size = len(self.nodes)
        self.a_cpu, self.a_mem = [0] * size, [0] * size
        self.a_disk, self.a_tasks = [0] * size, [0] * size
        self.version = [0] * size
        for p in self.placed.values():
            i = self.pos.get(p.node)
            if i is not None:
                self._add(i, p.need, 1)
        self.heaps: OrderedDict[Need, list[tuple[Key, int, int]]] = OrderedDict()
        if self.cursor >= size:
            self.cursor = -1

    def allocations(self) -> dict[str, Allocation]:
        """The current allocation of every node that has something placed on it."""
        return {
            n.name: Allocation(self.a_cpu[i], self.a_mem[i], self.a_disk[i], self.a_tasks[i])
            for i, n in enumerate(self.nodes)
            if self.a_tasks[i]
        }

    def _count_job(self, p: _Placed, sign: int) -> None:
        if not p.job:
            return
        per_node = self.jobs.setdefault(p.job, {})
        n = per_node.get(p.node, 0) + sign
        if n > 0:
            per_node[p.node] = n
        else:
            per_node.pop(p.node, None)
            if not per_node:
                del self.jobs[p.job]

    def _add(self, i: int, need: Need, sign: int) -> None:
        self.a_cpu[i] += sign * need.cpu
        self.a_mem[i] += sign * need.memory
        self.a_disk[i] += sign * need.disk
        self.a_tasks[i] += sign

    def _changed(self, i: int) -> None:
        """Node i's allocation changed: push its fresh entry into every cached heap."""
        self.version[i] += 1
        v, node = self.version[i], self.nodes[i]
        scorer = SCORERS.get(self.policy)
        if scorer is None:
            return
        cpu, mem, disk, tasks = self.a_cpu[i], self.a_mem[i], self.a_disk[i], self.a_tasks[i]
        limit = 2 * len(self.nodes) + 64
        bloated = []
        for need, heap in self.heaps.items():
            if lack(need, node, cpu, mem, disk) < 0:
                heapq.heappush(heap, (scorer(need, node, cpu, mem, tasks), i, v))
                if len(heap) > limit:
                    bloated.append(need)
        for need in bloated:  # mostly stale entries: start afresh
            self.heaps[need] = self._build(need)

    def assign(self, task_id: str, node: str, need: Need, job: str = "") -> None:
        """Count `task_id` (of job `job`, if any) against `node`. Idempotent; moves it if it
        was elsewhere."""
        old = self.placed.get(task_id)
        if old == (node, need, job):
            return
        if old is not None:
            self.release(task_id)
        self.placed[task_id] = p = _Placed(node, need, job)
        self._count_job(p, 1)
        i = self.pos.get(node)
        if i is not None:
            self._add(i, need, 1)
            self._changed(i)

    def release(self, task_id: str) -> bool:
        """`task_id` ended (or never ran): free what it held. False if it held nothing."""
        old = self.placed.pop(task_id, None)
        if old is None:
            return False
        self._count_job(old, -1)
        i = self.pos.get(old.node)
        if i is not None:
            self._add(i, old.need, -1)
            self._changed(i)
        return True

    # placement

    def _build(self, need: Need) -> list[tuple[Key, int, int]]:
        scorer = SCORERS[self.policy]
        heap = [
            (scorer(need, n, self.a_cpu[i], self.a_mem[i], self.a_tasks[i]), i, self.version[i])
            for i, n in enumerate(self.nodes)
            if lack(need, n, self.a_cpu[i], self.a_mem[i], self.a_disk[i]) < 0
        ]
        heapq.heapify(heap)
        return heap

    def _heap(self, need: Need) -> list[tuple[Key, int, int]]:
        heap = self.heaps.get(need)
        if heap is None:
            heap = self.heaps[need] = self._build(need)
            if len(self.heaps) > MAX_SHAPES:
                self.heaps.popitem(last=False)
        else:
            self.heaps.move_to_end(need)
        return heap

    def best(self, task: Task) -> Choice:
        """Where `task` would go now (as `choose` would say), without placing it."""
        if task.constraints or spread_of(task):
            return choose(self.policy, task, self.nodes, self.allocations(), self.cursor, self.jobs)
        need = need_of(task)
        if too_much := beyond_bounds(need):
            return Choice("", too_much, self.cursor)
        if self.policy == "roundrobin":
            size = len(self.nodes)
            for step in range(1, size + 1):
                i = (self.cursor + step) % size
                if lack(need, self.nodes[i], self.a_cpu[i], self.a_mem[i], self.a_disk[i]) < 0:
                    return Choice(self.nodes[i].name, "", i)
        else:
            heap, version = self._heap(need), self.version
            while heap and heap[0][2] != version[heap[0][1]]:
                heapq.heappop(heap)
            if heap:
                return Choice(self.nodes[heap[0][1]].name, "", self.cursor)
        alloc = [
            Allocation(self.a_cpu[i], self.a_mem[i], self.a_disk[i], self.a_tasks[i])
            for i in range(len(self.nodes))
        ]
        return Choice("", reason(need, self.nodes, alloc), self.cursor)

    def place(self, task: Task) -> Choice:
        """Choose a node for `task` and count it there; or say why there is none."""
        choice = self.best(task)
        if choice.node:
            self.cursor = choice.cursor
            self.assign(task.id, choice.node, need_of(task), task.job_id)
        return choice
