"""`GET /metrics`: Prometheus' text format (prometheus_client), from numbers orc keeps as it goes.

Every app (the manager's, each worker's) has its own `CollectorRegistry`, never the library's
global one: `orc` runs a manager and its workers in one process, and a test run starts many
clusters in one process, so each node's numbers must stay its own. The registry holds only
collectors that read, at scrape time, what the shell counted (`orc.shell.meter`) or what the
app counted itself (its HTTP requests): a scrape costs the metrics it reports, not the tasks
the manager holds (bench/metrics.py measures it at 10,000 tasks).

The route is `GET /metrics` on every app, behind the token like every route. What each node
reports is listed in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from quart import Response, g, request
from quart_trio import QuartTrio

from orc.core.model import State, Task
from orc.core.placement import NANO
from orc.http.wire import OrdersTaken
from orc.shell.meter import HTTP_BUCKETS, Histogram, LogMeter, ManagerMeter
from orc.shell.stats import node_stats

_KEY = "orc.metrics"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PLACEHOLDER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_machine_limiter = trio.CapacityLimiter(2)  # psutil reads /proc: a few scrapes at once at most

Families = Callable[[], Iterable[Metric]]


class _Families(Collector):
    """A collector made of a function that yields metric families."""

    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


class HttpMeter:
    """Requests answered, by method, route and status, and their latency by method and route:
    counted by the app's own hooks, in its trio thread (no lock)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((method, route))
        if hist is None:
            hist = self.latency[method, route] = Histogram(HTTP_BUCKETS)
        hist.observe(seconds)

    def families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "orc_http_requests",
            "HTTP requests answered, by method, route (the route's template) and status",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in self.requests.items():
            requests.add_metric([method, route, str(status)], count)
        yield requests
        yield histogram(
            "orc_http_request_duration_seconds",
            "Seconds from a request's arrival to its answer's start, by method and route",
            ["method", "route"],
            ((list(key), hist) for key, hist in self.latency.items()),
        )


class AppMetrics:
    """One app's registry, its HTTP counts, and what must be fetched before a scrape (an
    actor's answer, a sample of the machine): collectors themselves cannot await."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http = HttpMeter()
        self.refresh: list[Callable[[], Awaitable[None]]] = []
        self.add(self.http.families)

    def add(self, families: Families, refresh: Callable[[], Awaitable[None]] | None = None) -> None:
        self.registry.register(_Families(families))
        if refresh is not None:
            self.refresh.append(refresh)

    async def scrape(self) -> bytes:
        for refresh in self.refresh:
            await refresh()
        return generate_latest(self.registry)


def metrics_of(app: QuartTrio) -> AppMetrics:
    metrics = app.extensions[_KEY]
    assert isinstance(metrics, AppMetrics)
    return metrics


def instrument(app: QuartTrio) -> AppMetrics:
    """Count every request `app` answers and serve `GET /metrics`. Call it first thing, so its
    clock starts before any other hook can answer (a 401 is counted too)."""
    metrics = app.extensions[_KEY] = AppMetrics()
    routes: dict[str, str] = {}

    def route_of() -> str:
        """The route's template (`/tasks/{task_id}`), never the path: a label takes a
        handful of values, not one per task."""
        rule = request.url_rule
        if rule is None:
            return "unmatched"
        template = routes.get(rule.rule)
        if template is None:
            template = routes[rule.rule] = route_template(rule.rule)
        return template

    @app.before_request
    async def start_clock() -> None:
        g.orc_started = time.perf_counter()

    @app.after_request
    async def count_request(response: Response) -> Response:
        started = g.get("orc_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        method = request.method if request.method in _METHODS else "other"
        metrics.http.observe(method, route_of(), response.status_code, seconds)
        return response

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(await metrics.scrape(), content_type=CONTENT_TYPE_LATEST)

    return metrics


def route_template(rule: str) -> str:
    """A Quart rule as an OpenAPI path template: `/tasks/<task_id>` -> `/tasks/{task_id}`."""
    return _PLACEHOLDER.sub(r"{\1}", rule)


def histogram(
    name: str, documentation: str, labels: Sequence[str], items: Iterable[tuple[list[str], Any]]
) -> HistogramMetricFamily:
    """A histogram family of `(label values, Histogram)` items."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, hist in items:
        assert isinstance(hist, Histogram)
        buckets = [(floatToGoString(bound), count) for bound, count in hist.cumulative()]
        family.add_metric(values, buckets, hist.sum)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


# -- an event log: the manager's, or an `orc worker`'s journal -------------------------------


def log_families(meter: LogMeter) -> Iterator[Metric]:
    log = meter.log
    yield _counter(
        "orc_eventlog_appends", "Records appended to the event log since it opened", meter.appended
    )
    yield _counter(
        "orc_eventlog_fsyncs",
        "fdatasync calls of the event log since it opened (many appends share one); for a log"
        " in etcd, its transactions",
        meter.writes,
    )
    yield _gauge(
        "orc_eventlog_last_seq", "Sequence number of the last durable record", log.last_seq
    )
    yield histogram(
        "orc_eventlog_fsync_seconds",
        "Seconds each fdatasync of an append took",
        [],
        [([], meter.fsync)],
    )


def add_log_metrics(app: QuartTrio, meter: LogMeter) -> None:
    """An `orc worker`'s journal: its appends and fsyncs (the manager's log comes with
    `add_manager_metrics`)."""
    metrics_of(app).add(lambda: log_families(meter))


# -- the manager ------------------------------------------------------------------------------


def manager_families(meter: ManagerMeter) -> Iterator[Metric]:
    tasks = GaugeMetricFamily("orc_tasks", "Tasks the manager holds, by state", labels=["state"])
    for state in State:
        tasks.add_metric([state.label], meter.tasks.by_state[state])
    yield tasks
    placements = CounterMetricFamily(
        "orc_placements",
        "Tasks placed on a node: new (TaskScheduled) or again after a restart (TaskRestarted)",
        labels=["kind"],
    )
    for kind, count in meter.placements.items():
        placements.add_metric([kind], count)
    yield placements
    failures = CounterMetricFamily(
        "orc_placement_failures",
        "Times a task was found to fit no node (TaskUnplaced, logged when the reason changes),"
        " by what the most nodes lacked",
        labels=["reason"],
    )
    for kind, count in meter.unplaced.items():
        failures.add_metric([kind], count)
    yield failures
    yield _counter("orc_task_restarts", "Restarts decided (TaskRestarting)", meter.restarts)
    yield _counter(
        "orc_health_check_failures",
        "Health checks that failed (each GET of a task's HealthCheck that did not answer 2xx/3xx"
        " in time)",
        meter.health_check_failures,
    )
    yield _counter(
        "orc_tasks_unhealthy",
        "Runs found unhealthy: ORC_HEALTH_FAILURES failed checks in a row (TaskUnhealthy)",
        meter.unhealthy,
    )
    yield from log_families(meter.log)
    log = meter.log.log
    yield _gauge(
        "orc_snapshot_last_seq",
        "Sequence number the newest snapshot stands for (0: none)",
        meter.snapshot_seq,
    )
    yield _gauge(
        "orc_snapshot_age_events",
        "Events logged after the newest snapshot: what a start-up replays",
        log.last_seq - meter.snapshot_seq,
    )
    if meter.snapshot_time is not None:
        yield _gauge(
            "orc_snapshot_age_seconds",
            "Seconds since the newest snapshot was written",
            max(0.0, time.time() - meter.snapshot_time),
        )
    yield from _node_families(meter)
    yield histogram(
        "orc_update_lag_seconds",
        "Seconds from a worker's update (its At) to the manager having logged and applied it",
        [],
        [([], meter.update_lag)],
    )


def _node_families(meter: ManagerMeter) -> Iterator[Metric]:
    node = ["node"]
    up = GaugeMetricFamily("orc_node_up", "1 while the node is up, 0 once it is down", labels=node)
    cores = GaugeMetricFamily("orc_node_cpu_cores", "CPU cores the node offers", labels=node)
    memory = GaugeMetricFamily("orc_node_memory_bytes", "Memory the node offers", labels=node)
    disk = GaugeMetricFamily("orc_node_disk_bytes", "Disk the node offers", labels=node)
    a_cpu = GaugeMetricFamily(
        "orc_node_allocated_cpu_cores",
        "CPU cores its Scheduled and Running tasks ask for",
        labels=node,
    )
    a_memory = GaugeMetricFamily(
        "orc_node_allocated_memory_bytes",
        "Memory its Scheduled and Running tasks ask for",
        labels=node,
    )
    a_disk = GaugeMetricFamily(
        "orc_node_allocated_disk_bytes", "Disk its Scheduled and Running tasks ask for", labels=node
    )
    placed = GaugeMetricFamily(
        "orc_node_tasks", "Tasks Scheduled or Running on the node", labels=node
    )
    for name, info in meter.nodes.items():
        a = meter.tasks.allocated(name)
        up.add_metric([name], 0 if name in meter.down else 1)
        cores.add_metric([name], info.cores)
        memory.add_metric([name], info.memory)
        disk.add_metric([name], info.disk)
        a_cpu.add_metric([name], a.cpu / NANO)
        a_memory.add_metric([name], a.memory)
        a_disk.add_metric([name], a.disk)
        placed.add_metric([name], a.tasks)
    yield from (up, cores, memory, disk, a_cpu, a_memory, a_disk, placed)


def add_manager_metrics(app: QuartTrio, meter: ManagerMeter) -> None:
    metrics_of(app).add(lambda: manager_families(meter))


# -- a worker ---------------------------------------------------------------------------------


class WorkerSample:
    """What a worker's scrape fetches first: its tasks (from the Worker actor) and a sample of
    its machine (psutil, in a thread)."""

    def __init__(self) -> None:
        self.tasks: dict[State, int] = dict.fromkeys(State, 0)
        self.machine: dict[str, Any] = {}


def add_worker_metrics(
    app: QuartTrio,
    tasks: Callable[[], Awaitable[list[Task]]],
    data_dir: Path,
    taken: OrdersTaken,
) -> None:
    """A worker's tasks by state (its own view), the orders it took, and its machine's
    capacity and use."""
    sample = WorkerSample()

    async def refresh() -> None:
        counts = dict.fromkeys(State, 0)
        for task in await tasks():
            counts[task.state] += 1
        sample.tasks = counts
        running = counts[State.RUNNING]
        sample.machine = await trio.to_thread.run_sync(
            node_stats, data_dir, running, limiter=_machine_limiter
        )

    def families() -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "orc_worker_tasks", "Tasks this worker knows, by state", labels=["state"]
        )
        for state in State:
            by_state.add_metric([state.label], sample.tasks[state])
        yield by_state
        yield _counter(
            "orc_worker_order_batches", "POST /orders requests taken (batches)", taken.batches
        )
        yield _counter("orc_worker_orders", "Orders those requests carried", taken.orders)
        yield from machine_families(sample.machine)

    metrics_of(app).add(families, refresh)


def machine_families(stats: dict[str, Any]) -> Iterator[Metric]:
    """This machine's capacity and use, from a `node_stats` sample (memory there is in kB)."""
    yield _gauge("orc_machine_cpu_cores", "CPU cores of this machine", os.cpu_count() or 1)
    if not stats:
        return
    mem, disk, load = stats["MemStats"], stats["DiskStats"], stats["LoadStats"]
    yield _gauge("orc_machine_memory_bytes", "Memory of this machine", mem["mem_total"] * 1024)
    yield _gauge(
        "orc_machine_memory_available_bytes",
        "Memory available to new processes without swapping",
        mem["mem_available"] * 1024,
    )
    yield _gauge("orc_machine_disk_bytes", "Size of the data directory's file system", disk["all"])
    yield _gauge("orc_machine_disk_used_bytes", "Bytes used on that file system", disk["used"])
    for minutes in (1, 5, 15):
        yield _gauge(
            f"orc_machine_load{minutes}",
            f"Load average over {minutes} minute{'s' if minutes > 1 else ''}",
            load[f"last{minutes}min"],
        )
