"""`orc replay` output: aligned text for a terminal, plain data for `--json`.

Pure: strings and dicts in, strings and dicts out; the CLI prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import msgspec

from orc.core.events import to_wire
from orc.core.model import State, for_wire
from orc.core.state import ClusterState
from orc.core.transitions import ACTIVE, TERMINAL
from orc.replay.story import CheckResult, History, JobLine, JobStory, Row, parse_time, slot_of


def duration(seconds: float) -> str:
    """`12ms`, `1.2s`, `2m05s`, `1h02m`, `3d04h`: short enough for a column, exact enough."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def when(at: str | None) -> str:
    """An event time as `2026-11-28 12:00:01.234` in UTC; unparsable times as recorded."""
    if not at:
        return "-"
    moment = parse_time(at)
    if moment is None:
        return at
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def size(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(r)
        ]
        cells[-1] = r[-1]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


class Ids:
    """Task IDs shortened to 8 characters when that keeps them apart (as `docker ps` does)."""

    def __init__(self, ids: set[str | None]) -> None:
        real = {i for i in ids if i}
        self.width = 8 if len({i[:8] for i in real}) == len(real) else 0

    def __call__(self, task_id: str | None) -> str:
        if not task_id:
            return ""
        return task_id[: self.width] if self.width else task_id


def _move(row: Row | JobLine) -> str:
    if row.src is None and row.dst is None:
        return ""
    if row.src == row.dst:
        return row.src or ""
    return f"{row.src or ''} -> {row.dst or '?'}".strip()


def _reason(row: Row) -> str:
    """The reason column; a record that broke a rule is marked, with what `apply` did with it
    (the story puts that in its reason: skipped, or the task quarantined)."""
    if row.violation is None:
        return row.reason
    return f"!! {row.violation}" + (f"; {row.reason}" if row.reason else "")


def _event_rows(rows: Sequence[Row], ids: Ids, with_task: bool = True) -> str:
    header = ["SEQ", "TIME", "EVENT", *(["TASK"] if with_task else []), "FROM -> TO", "NODE"]
    body = [
        [
            str(r.seq),
            when(r.at),
            r.event,
            *([ids(r.task)] if with_task else []),
            _move(r),
            r.node,
            _reason(r),
        ]
        for r in rows
    ]
    return table([*header, "REASON"], body, right=[0])


def timeline_text(rows: Sequence[Row]) -> str:
    if not rows:
        return "the log is empty\n"
    ids = Ids({r.task for r in rows})
    tasks = len({r.task for r in rows if r.task})
    head = (
        f"events {rows[0].seq}-{rows[-1].seq}, {when(rows[0].at)} to {when(rows[-1].at)},"
        f" {tasks} task{'s' * (tasks != 1)}"
    )
    return f"{head}\n\n{_event_rows(rows, ids)}\n"


def history_text(h: History) -> str:
    task = h.task
    what = task.image or " ".join(task.cmd or [])
    title = f"task {task.id}" + (f" {task.name!r}" if task.name else "")
    if what:
        title += f" ({task.driver + ': ' if task.driver else ''}{what})"
    state = State(task.state).label
    now = f"now {state}" + (f" on {task.node}" if task.node else "")
    now += f", {task.restart_count} restart{'s' * (task.restart_count != 1)}"
    if task.exit_code is not None and State(task.state) in TERMINAL:  # else a past run's
        now += f", exit {task.exit_code}"
    if task.error:
        now += f", error: {task.error}"
    if task.job_id:
        now += f"\n{slot_of(task)}"
    periods = [
        [
            p.state,
            when(p.since),
            "(final)"
            if p.seconds is None
            else duration(p.seconds) + ("+ (still, at the end of the log)" if p.open else ""),
        ]
        for p in h.periods
    ]
    totals = ", ".join(f"{state} {duration(s)}" for state, s in h.totals.items())
    parts = [
        title,
        now,
        "",
        _event_rows(h.rows, Ids({task.id}), with_task=False),
        "",
        table(["STATE", "SINCE", "FOR"], periods),
    ]
    if totals:
        parts += ["", f"time in each state: {totals}"]
    return "\n".join(parts) + "\n"


def state_text(state: ClusterState, seq: int, at: str) -> str:
    ids = Ids(set(state.tasks))
    tasks = [
        [
            ids(t.id),
            t.name,
            State(t.state).label + (" (stopping)" if t.id in state.stop_requested else ""),
            t.node,
            str(t.restart_count),
            when(t.updated_at),
            t.error,
        ]
        for t in state.tasks.values()
    ]
    active: dict[str, int] = {}
    for t in state.tasks.values():
        if State(t.state) in ACTIVE:
            active[t.node] = active.get(t.node, 0) + 1
    nodes = [
        [
            n.name,
            n.address,
            ",".join(n.drivers) or "-",
            str(n.cores),
            size(n.memory),
            size(n.disk),
            str(active.get(n.name, 0)),
        ]
        for n in state.nodes.values()
    ]
    counts: dict[str, int] = {}
    for t in state.tasks.values():
        label = State(t.state).label
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{n} {label}" for label, n in counts.items()) or "none"
    parts = [
        f"state at seq {seq}, {when(at)}",
        "",
        f"TASKS ({len(tasks)}: {summary})",
        table(["ID", "NAME", "STATE", "NODE", "RESTARTS", "UPDATED", "ERROR"], tasks, right=[4])
        if tasks
        else "(none)",
        "",
        f"NODES ({len(nodes)})",
        table(["NAME", "ADDRESS", "DRIVERS", "CORES", "MEMORY", "DISK", "ACTIVE TASKS"], nodes)
        if nodes
        else "(none)",
    ]
    return "\n".join(parts) + "\n"


def _counts(tasks: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in tasks.items() if n) or "none"


def _slot(line: JobLine) -> str:
    """`0 v1`: the slot and version a line is about."""
    parts = [] if line.slot is None or line.slot < 0 else [str(line.slot)]
    if line.version is not None:
        parts.append(f"v{line.version}")
    return " ".join(parts)


def _job_event(line: JobLine) -> str:
    return f"decided:{line.action}" if line.action else line.event


def job_text(story: JobStory) -> str:
    """A job's story: what it is now, its versions, every event about it and its tasks (each
    decision with its reason), each task's fate, and a periodic job's runs."""
    job = story.job
    title = f"job {job.id}" + (f" {job.name!r}" if job.name else "") + f" ({job.type})"
    if job.parent:
        title += f", a run of periodic job {job.parent}"
    stable = f" (stable: {job.stable_version})" if job.stable_version >= 0 else ""
    running = job.tasks.get("Running", 0)
    now = (
        f"now {job.status} at version {job.version}{stable}: {running} of {job.count} running;"
        f" tasks: {_counts(job.tasks)}"
    )
    lines = [title, now]
    d = job.deployment
    if d is not None:
        text = f"deployment of version {d.version}: {d.state}"
        text += f" ({d.reason})" if d.reason else ""
        text += f"; {d.desired} desired, {d.placed} placed, {d.healthy} healthy"
        text += f", {d.unhealthy} unhealthy" if d.unhealthy else ""
        lines.append(text)
    if job.waiting:
        lines.append(f"waiting: {job.waiting}")
    if job.spec.periodic is not None:
        lines.append(f"periodic: {job.spec.periodic.cron!r}, {len(story.runs)} runs launched")
    versions = [
        [
            str(v.version),
            when(v.at),
            v.reason + (f"; rolling update to version {v.version}" if v.rolling_update else ""),
        ]
        for v in story.versions
    ]
    ids = Ids({line.task for line in story.events} | {t.id for t in story.tasks})
    events = [
        [
            str(line.seq),
            when(line.at),
            _job_event(line),
            ids(line.task),
            _slot(line),
            _move(line),
            line.node,
            f"!! {line.violation}; {line.reason}" if line.violation else line.reason,
        ]
        for line in story.events
    ]
    tasks = [
        [
            ids(t.id),
            str(t.slot) if t.slot >= 0 else "-",
            str(t.version),
            t.state,
            t.node,
            "; ".join(f.what for f in t.fate),
        ]
        for t in story.tasks
    ]
    by_state: dict[str, int] = {}
    for t in story.tasks:
        by_state[t.state] = by_state.get(t.state, 0) + 1
    lines += ["", f"VERSIONS ({len(versions)})"]
    lines.append(table(["VERSION", "REGISTERED", "REASON"], versions) if versions else "(none)")
    lines += ["", f"EVENTS ({len(events)})"]
    header = ["SEQ", "TIME", "EVENT", "TASK", "SLOT", "FROM -> TO", "NODE", "REASON"]
    lines.append(table(header, events, right=[0]) if events else "(none)")
    lines += ["", f"TASKS ({len(tasks)}: {_counts(by_state)})"]
    header = ["TASK", "SLOT", "VERSION", "STATE", "NODE", "FATE"]
    lines.append(table(header, tasks, right=[1, 2]) if tasks else "(none)")
    if story.runs:
        runs = [
            [r.id, when(r.launched_at), r.status, _counts(r.tasks), r.waiting] for r in story.runs
        ]
        lines += ["", f"RUNS ({len(runs)}; `orc replay --job RUN` tells each)"]
        lines.append(table(["JOB", "LAUNCHED", "STATUS", "TASKS", "WAITING"], runs))
    return "\n".join(lines) + "\n"


def record_json(record: Any) -> str:
    """A record as the wire shows events (an object with `Type`), not as the log stores it."""
    return msgspec.json.encode(to_wire(record)).decode()


def check_text(result: CheckResult) -> str:
    quarantined = _quarantined_text(result)
    if result.ok:
        return (
            f"OK: {result.events} events, {result.tasks} tasks, {result.nodes} nodes:"
            " every transition legal, every invariant holds\n"
        ) + quarantined
    lines = []
    for v in result.violations:
        lines.append(f"seq {v.seq}  {when(v.at)}  {v.kind}: {v.message}")
        lines.append(f"    {record_json(v.record)}")
    n = len(result.violations)
    text = "\n".join(lines) + "\n" + quarantined
    return text + f"{n} record{'s' * (n != 1)} broke the rules, in {result.events} events\n"


def _quarantined_text(result: CheckResult) -> str:
    """The tasks quarantined (ended Failed rather than trusted), each with the record that did
    it: `  seq 21  2026-11-28 12:01:31.000  task bbbbbbbb: quarantined: TaskScheduled ...`."""
    if not result.quarantined:
        return ""
    ids = Ids({q.task for q in result.quarantined})
    n = len(result.quarantined)
    lines = [f"{n} task{'s' * (n != 1)} quarantined (ended Failed, see the task's Error):"]
    lines += [
        f"  seq {q.seq}  {when(q.at)}  task {ids(q.task)}: {q.reason}" for q in result.quarantined
    ]
    return "\n".join(lines) + "\n"


# -- --json ---------------------------------------------------------------------------------


def _rows(rows: Sequence[Row]) -> list[Any]:
    return msgspec.to_builtins(list(rows))


def timeline_json(rows: Sequence[Row]) -> dict[str, Any]:
    return {"events": _rows(rows)}


def history_json(h: History) -> dict[str, Any]:
    return {
        "task": msgspec.to_builtins(for_wire(h.task)),
        "events": _rows(h.rows),
        "periods": msgspec.to_builtins(h.periods),
        "totals": h.totals,
    }


def job_json(story: JobStory) -> dict[str, Any]:
    """The story as `GET /jobs/{id}/history` answers it (the job's view has PascalCase keys,
    as `GET /jobs/{id}`; the story's own keys are snake_case, as the task history's)."""
    doc: dict[str, Any] = msgspec.to_builtins(story)
    return doc


def state_json(state: ClusterState, seq: int, at: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at,
        "tasks": [msgspec.to_builtins(for_wire(t)) for t in state.tasks.values()],
        "nodes": msgspec.to_builtins(list(state.nodes.values())),
        "stop_requested": sorted(state.stop_requested),
    }


def check_json(result: CheckResult) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(result)
    for violation, out in zip(result.violations, doc["violations"], strict=True):
        out["record"] = msgspec.to_builtins(to_wire(violation.record))  # as the wire shows it
    return doc
