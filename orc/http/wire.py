"""The shapes of the HTTP answers that are not one of the core's types, as msgspec types.

`GET /openapi.json` is generated from msgspec types (orc/http/openapi.py): the core's for tasks,
events and nodes, these for the rest. Some of these answers are built as plain dicts by code
that predates them (`GET /stats` by the Manager actor, a worker's `GET /stats` by
`orc.shell.stats`); the schemathesis test (tests/http/test_openapi.py) checks the live answers
against these types, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import msgspec

from orc.core.model import wire_name


class Error(msgspec.Struct, forbid_unknown_fields=True):
    """Every error: what went wrong, and what to do about it when there is something to do."""

    message: str


class EventsError(msgspec.Struct, forbid_unknown_fields=True):
    """An error of `GET /events`: `EarliestSeq` with a 410 (what compaction kept), `LastSeq`
    with a 400 for an `after` beyond the end of the log."""

    message: str
    EarliestSeq: int | None = None
    LastSeq: int | None = None


class Standby(msgspec.Struct, forbid_unknown_fields=True):
    """`307` from a standby manager to a write (docs/ha.md): the leader's URL, which `Location`
    holds too with the request's path and query."""

    message: str
    Leader: str


class Stats(msgspec.Struct, forbid_unknown_fields=True):
    """The manager's `GET /stats`: tasks (by state label), nodes, and the log's last seq."""

    TaskCount: int
    Tasks: dict[str, int]
    NodeCount: int
    NodesDown: list[str]
    Nodes: list[str]
    LogSeq: int


class Logs(msgspec.Struct, forbid_unknown_fields=True):
    """A task's output, as UTF-8 (bytes that are not are replaced)."""

    Stdout: str
    Stderr: str


class Registered(msgspec.Struct, forbid_unknown_fields=True):
    """The manager's answer to a worker's registration or heartbeat (`POST /nodes`)."""

    Name: str
    Message: str


class OrdersTaken(msgspec.Struct, rename=wire_name, forbid_unknown_fields=True):
    """`GET /orders`: how many `POST /orders` requests this worker took since it started, and
    how many orders they carried: how well its manager batches (a burst of tasks should come
    in far fewer requests than tasks)."""

    batches: int = 0
    orders: int = 0


# -- a worker's `GET /stats`, in the seed's shape (Go's goprocinfo keys) ------------------------


class MemStats(msgspec.Struct, forbid_unknown_fields=True):
    """Memory in kB, as /proc/meminfo has it."""

    mem_total: int
    mem_free: int
    mem_available: int
    buffers: int
    cached: int
    active: int
    inactive: int
    swap_total: int
    swap_free: int
    shmem: int
    slab: int


class DiskStats(msgspec.Struct, forbid_unknown_fields=True):
    """The data directory's file system, in bytes; `freeInodes` a count."""

    all: int
    used: int
    free: int
    freeInodes: int


class CPUStats(msgspec.Struct, forbid_unknown_fields=True):
    """Seconds of CPU time since boot, per mode, over all CPUs."""

    id: str
    user: float
    nice: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float
    guest: float
    guest_nice: float


class LoadStats(msgspec.Struct, forbid_unknown_fields=True):
    last1min: float
    last5min: float
    last15min: float
    process_running: int
    process_total: int
    last_pid: int


class WorkerStats(msgspec.Struct, forbid_unknown_fields=True):
    """A worker's `GET /stats`: its machine, and `TaskCount` its running tasks."""

    MemStats: MemStats
    DiskStats: DiskStats
    CPUStats: CPUStats
    LoadStats: LoadStats
    TaskCount: int


# -- which requests only the leader answers (several managers on etcd) --------------------------

READS = frozenset({"GET", "HEAD", "OPTIONS"})


def leader_only(method: str, path: str) -> bool:
    """Writes, and a task's logs (only the leader's proxies reach the workers): a standby
    sends these on to the leader (`307`). One rule for the standby's redirect and for the API
    document, which says where a 307 may come; `path` is a request's or a route's template."""
    return method not in READS or (path.startswith("/tasks/") and path.endswith("/logs"))


# -- reaching highly available managers: shared by the worker and the CLI ----------------------

REDIRECTS = 3  # a standby names the leader: one hop; a few more for a leader that just moved


def manager_urls(given: str) -> tuple[str, ...]:
    """`URL[,URL...]` (`--manager`, ORC_ADDR) as a tuple of URLs, each without its trailing
    slash."""
    return tuple(u.strip().rstrip("/") for u in given.split(",") if u.strip())
