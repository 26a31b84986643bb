"""`orc job ...`: run, status, plan, scale, stop, revert, versions and history of jobs.

They speak the manager's job routes (docs/jobs.md) through the same `Api` as the task commands
(orc/cmd/client.py), with the same exit statuses: 0 success; 1 the deployment or job failed,
or the server said no; 2 a usage error or a bad job file; 3 orc could not be reached.
"""

from __future__ import annotations

import json as jsonlib
import re
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orc.cmd.client import (
    DEFAULT_ADDR,
    FAILED,
    USAGE,
    Addr,
    Api,
    Json,
    Token,
    _age,
    _columns,
    _print,
    _state_word,
    _when,
    fail,
    out,
)
from orc.core.jobspec import JOB_ID_PATTERN, JOB_ID_WORDS

POLL = 0.5  # seconds between looks at a rollout: one job, two requests a second
_JOB_ID = re.compile(JOB_ID_PATTERN)
PLACED = ("Pending", "Scheduled", "Running")

app = typer.Typer(
    name="job",
    help="Jobs: a task template kept at a count (service), run to completion (batch), or run"
    " on every node (system). A job file is the API's job spec, in TOML or JSON.",
    epilog="Examples: `orc job run web.toml`; `orc job status web`; `orc job scale web 5`.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JobId = Annotated[str, typer.Argument(metavar="ID", help="the job's ID")]
JobFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="a job spec in TOML or JSON (the API's keys)")
]


@app.command()
def run(
    file: JobFile,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="return once orc took it; do not watch")
    ] = False,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Submit a job (or a new version of one) and watch its rollout until it is done.

    A service is done when its deployment succeeds (exit 0) or fails (exit 1), a system job
    when a task runs on every node it fits, a batch job when it completes.

    \b
    Examples:
      orc job run web.toml
      orc job run --detach batch.json
    """
    spec = _job_from_file(file)
    api = Api(addr, token)
    accepted = api.request("POST", "/jobs", ok=(200, 201), json=spec)
    job_id, version = accepted["ID"], accepted["Version"]
    if detach:
        _say(json, accepted)
        return
    if not json:
        out.print(f"{job_id} {_accepted_text(accepted)}", markup=False)
    view, ok, why = _watch(api, job_id, version, show=not json)
    if json:
        out.print(jsonlib.dumps(view), markup=False)
    if not ok:
        fail(FAILED, f"job {job_id} version {version}: {why}")
    if not json:
        out.print(f"{job_id} version {version}: {why}", markup=False)


@app.command()
def status(
    job_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="a job's ID (none: every job)")
    ] = None,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Every job in a table; or one job: its deployment, its tasks by version, its tasks.

    \b
    Examples:
      orc job status
      orc job status web
    """
    api = Api(addr, token)
    if job_id is None:
        jobs = api.request("GET", "/jobs")
        if json:
            out.print(jsonlib.dumps(jobs), markup=False)
            return
        rows = [
            [
                j["ID"],
                j["Type"],
                j["Status"],
                str(j["Version"]),
                f"{j['Tasks'].get('Running', 0)}/{j['Count']}",
                (j["Deployment"] or {}).get("State", "-"),
                j["Waiting"] or "-",
            ]
            for j in jobs
        ]
        _columns(["ID", "TYPE", "STATUS", "VERSION", "RUNNING", "DEPLOYMENT", "WAITING"], rows)
        return
    job = api.request("GET", f"/jobs/{_check(job_id)}")
    if json:
        out.print(jsonlib.dumps(job), markup=False)
        return
    tasks = api.request("GET", "/tasks", params={"job": job["ID"]})
    _job_details(job, tasks)


@app.command()
def plan(
    file: JobFile,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """What submitting a job file would do, without doing it: the changes, the reconciler's
    steps, and where each new task would go (or why it cannot).

    \b
    Example:
      orc job plan web.toml
    """
    spec = _job_from_file(file)
    job_id = spec.get("ID")
    if not isinstance(job_id, str) or not job_id:
        fail(USAGE, f'{file}: the job has no ID: give it one, like ID = "web"')
    planned = Api(addr, token).request("POST", f"/jobs/{_check(job_id)}/plan", json=spec)
    if json:
        out.print(jsonlib.dumps(planned), markup=False)
        return
    if planned["Created"]:
        head = f"job {job_id}: a new job, version {planned['Version']}"
    elif planned["Changed"]:
        head = f"job {job_id}: version {planned['Version']}"
        if planned["RollingUpdate"]:
            head += ", a rolling update replaces the tasks of older versions"
    else:
        head = f"job {job_id}: unchanged, version {planned['Version']}"
    out.print(head, markup=False)
    for line in planned["Changes"]:
        out.print(f"  {line}", markup=False)
    if planned["Steps"]:
        out.print("steps:")
        _columns(
            ["ACTION", "SLOT", "VERSION", "TASK", "REASON"],
            [
                [
                    s["Action"],
                    _slot(s["Slot"]),
                    str(s["Version"]),
                    s["TaskID"][:8] or "-",
                    s["Reason"],
                ]
                for s in planned["Steps"]
            ],
        )
    else:
        out.print("steps: none")
    if planned["Placements"]:
        out.print("placements:")
        _columns(
            ["TASK", "SLOT", "NODE"],
            [
                [
                    p["TaskID"][:8],
                    _slot(p["Slot"]),
                    p["Node"] or f"not placed: {p['Reason']}",
                ]
                for p in planned["Placements"]
            ],
        )


@app.command()
def scale(
    job_id: JobId,
    count: Annotated[int, typer.Argument(metavar="N", help="how many tasks it should run")],
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Change how many tasks a job runs (its spec's version stays).

    \b
    Example:
      orc job scale web 5
    """
    body = {"Count": count}
    accepted = Api(addr, token).request("PUT", f"/jobs/{_check(job_id)}/scale", json=body)
    _say(json, accepted)


@app.command()
def stop(
    job_id: JobId,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Stop a job: its tasks are stopped. `orc job run` of it starts it again.

    \b
    Example:
      orc job stop web
    """
    accepted = Api(addr, token).request("DELETE", f"/jobs/{_check(job_id)}")
    _say(json, accepted)


@app.command()
def revert(
    job_id: JobId,
    version: Annotated[int, typer.Argument(metavar="VERSION", help="the version to go back to")],
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Run an earlier version's spec again (as a new version).

    \b
    Example:
      orc job revert web 2
    """
    if version < 0:
        fail(USAGE, f"VERSION must be 0 or more, got {version}")
    body = {"Version": version}
    accepted = Api(addr, token).request("POST", f"/jobs/{_check(job_id)}/revert", json=body)
    _say(json, accepted)


@app.command()
def versions(
    job_id: JobId,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """A job's versions, newest first: when, why, which is current and which last deployed.

    \b
    Example:
      orc job versions web
    """
    listed = Api(addr, token).request("GET", f"/jobs/{_check(job_id)}/versions")
    if json:
        out.print(jsonlib.dumps(listed), markup=False)
        return
    rows = [
        [
            str(v["Version"]),
            _when(v["At"]),
            ", ".join(w for w, on in (("current", v["Current"]), ("stable", v["Stable"])) if on)
            or "-",
            v["Reason"],
        ]
        for v in listed
    ]
    _columns(["VERSION", "AT", "STATUS", "REASON"], rows)


@app.command()
def history(
    job_id: JobId,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """A job's story from the event log: its versions, the reconciler's decisions with their
    reasons, and each task's fate (as `orc replay --job ID` tells it, from the live log).

    \b
    Example:
      orc job history web
    """
    job_id = _check(job_id)
    story = Api(addr, token).request("GET", f"/jobs/{job_id}/history", ok=(200, 404))
    if isinstance(story, dict) and set(story) == {"message"}:  # a 404
        message = str(story["message"])
        if message.startswith("no route"):
            fail(FAILED, "this orc has no job history (GET /jobs/{id}/history): it is older")
        fail(FAILED, f"404: {message}")
    if json:
        out.print(jsonlib.dumps(story), markup=False)
        return
    told = _story_text(story)
    # an orc of another version may tell it in another shape: then as it came
    out.print(told if told is not None else jsonlib.dumps(story, indent=2), markup=False)


# -- helpers ----------------------------------------------------------------------------------


def _check(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        fail(
            USAGE,
            f"{job_id!r} is not a job ID: {JOB_ID_WORDS}",
        )
    return job_id


def _job_from_file(path: Path) -> dict[str, Any]:
    """The job spec in `path`: TOML (`.toml`) or JSON (`.json`); otherwise JSON if it starts
    with `{`, else TOML. A bad file is a usage error that names the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        fail(USAGE, f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(USAGE, f"{path} is not text (UTF-8)")
    as_json = path.suffix == ".json" or (path.suffix != ".toml" and text.lstrip()[:1] == "{")
    kind = "JSON" if as_json else "TOML"
    try:
        data = jsonlib.loads(text) if as_json else tomllib.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are both
        fail(USAGE, f"{path} is not valid {kind}: {exc}")
    if not isinstance(data, dict):
        fail(USAGE, f"{path}: expected a job spec object (ID, Type, Count, Task, ...)")
    return data


def _say(as_json: bool, accepted: dict[str, Any]) -> None:
    """A change taken: `web version 3: count 2 -> 3`, or the API's JSON."""
    _print(
        as_json,
        accepted,
        lambda: out.print(f"{accepted['ID']} {_accepted_text(accepted)}", markup=False),
    )


def _accepted_text(accepted: dict[str, Any]) -> str:
    message = str(accepted.get("Message", ""))
    head = f"version {accepted['Version']}"
    return message if message.startswith(head) else f"{head}: {message}"


def _slot(slot: int) -> str:
    return "-" if slot < 0 else str(slot)


def _outcome(view: dict[str, Any], version: int) -> tuple[bool, str] | None:
    """Whether the rollout of `version` is over, and how: (succeeded, what), or None. The
    manager judges the current version's (`Rollout`); a newer version replaced ours."""
    if view["Version"] > version:
        return False, f"replaced by version {view['Version']} ({_reason(view)})"
    rollout = view["Rollout"]
    if rollout["State"] == "running":
        return None
    return rollout["State"] == "successful", rollout["Reason"]


def _reason(view: dict[str, Any]) -> str:
    d = view["Deployment"]
    return (d or {}).get("Reason") or view["Waiting"] or "no reason given"


def _watch(api: Api, job_id: str, version: int, show: bool) -> tuple[dict[str, Any], bool, str]:
    """Poll the job until its rollout of `version` is over, showing its progress: live on a
    terminal, a line per change otherwise."""
    live = Live(console=out, auto_refresh=False) if show and sys.stdout.isatty() else None
    said = ""
    if live is not None:
        live.start()
    try:
        while True:
            view: dict[str, Any] = api.request("GET", f"/jobs/{job_id}")
            over = _outcome(view, version)
            if live is not None:
                live.update(_progress_table(view), refresh=True)
            elif show and (line := _progress_line(view)) != said:
                out.print(line, markup=False)
                said = line
            if over is not None:
                return view, *over
            time.sleep(POLL)
    finally:
        if live is not None:
            live.stop()


def _tallies(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each version's tasks: the deployment's own tallies, or the job's tasks as one row."""
    d = view["Deployment"]
    if d is not None and d["Versions"]:
        return list(d["Versions"])
    tasks = view["Tasks"]
    return [
        {
            "Version": view["Version"],
            "Placed": sum(tasks.get(s, 0) for s in PLACED),
            "Running": tasks.get("Running", 0),
            "Healthy": None,
            "Unhealthy": None,
        }
    ]


def _progress_line(view: dict[str, Any]) -> str:
    parts = [f"{view['ID']} v{view['Version']} {view['Status']}"]
    d = view["Deployment"]
    if d is not None:
        parts.append(
            f"deployment v{d['Version']} {d['State']}: desired {d['Desired']}, placed"
            f" {d['Placed']}, healthy {d['Healthy']}"
            + (f", unhealthy {d['Unhealthy']}" if d["Unhealthy"] else "")
        )
    else:
        parts.append(f"count {view['Count']}")
    parts.append(
        "; ".join(
            f"v{t['Version']}: placed {t['Placed']} running {t['Running']}" for t in _tallies(view)
        )
    )
    if view["Waiting"]:
        parts.append(f"waiting: {view['Waiting']}")
    return " | ".join(parts)


def _progress_table(view: dict[str, Any]) -> Group:
    d = view["Deployment"]
    head = Text(f"{view['ID']} version {view['Version']} ({view['Type']}, {view['Status']})")
    if d is not None:
        head.append(f"  deployment of v{d['Version']}: ")
        head.append(d["State"], style=DEPLOYMENT_STYLES.get(d["State"], ""))
        if d["Reason"]:
            head.append(f" ({d['Reason']})")
    table = Table(box=None, pad_edge=False)
    for column in ("VERSION", "DESIRED", "PLACED", "RUNNING", "HEALTHY", "UNHEALTHY"):
        table.add_column(column, justify="right")
    desired_of = d["Version"] if d is not None else view["Version"]
    for t in _tallies(view):
        table.add_row(
            str(t["Version"]),
            str(view["Count"]) if t["Version"] == desired_of else "-",
            str(t["Placed"]),
            str(t["Running"]),
            "-" if t["Healthy"] is None else str(t["Healthy"]),
            "-" if t["Unhealthy"] is None else str(t["Unhealthy"]),
        )
    parts: list[Any] = [head, table]
    if view["Waiting"]:
        parts.append(Text(f"waiting: {view['Waiting']}", style="yellow"))
    return Group(*parts)


DEPLOYMENT_STYLES = {
    "running": "cyan",
    "successful": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def _job_details(job: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    counts = ", ".join(f"{state} {n}" for state, n in job["Tasks"].items() if n)
    rows = [
        ("ID", job["ID"]),
        ("Name", job["Name"]),
        ("Type", job["Type"]),
        ("Status", job["Status"]),
        ("Version", str(job["Version"])),
        ("StableVersion", str(job["StableVersion"]) if job["StableVersion"] >= 0 else "none yet"),
        ("Count", str(job["Count"])),
        ("Tasks", counts or "none"),
        ("Parent", job["Parent"]),
        ("SubmittedAt", _when(job["SubmittedAt"])),
        ("UpdatedAt", _when(job["UpdatedAt"])),
    ]
    for key, value in rows:
        if value:
            table.add_row(key, Text(value))
    out.print(table)
    if job["Waiting"]:
        out.print(f"waiting: {job['Waiting']}", markup=False)
    d = job["Deployment"]
    if d is not None:
        line = (
            f"deployment of version {d['Version']}: {d['State']}"
            f" (desired {d['Desired']}, placed {d['Placed']}, healthy {d['Healthy']},"
            f" unhealthy {d['Unhealthy']}; started {_when(d['StartedAt'])})"
        )
        out.print(line + (f": {d['Reason']}" if d["Reason"] else ""), markup=False)
        if d["Versions"]:
            _columns(
                ["VERSION", "PLACED", "RUNNING", "HEALTHY", "UNHEALTHY"],
                [
                    [str(t[k]) for k in ("Version", "Placed", "Running", "Healthy", "Unhealthy")]
                    for t in d["Versions"]
                ],
            )
    if tasks:
        out.print("tasks:")
        _columns(
            ["ID", "SLOT", "VERSION", "STATE", "NODE", "RESTARTS", "AGE"],
            [
                [
                    t["ID"][:8],
                    _slot(t.get("Slot", 0)),
                    str(t.get("JobVersion", 0)),
                    _state_word(t),
                    t["Node"] or "-",
                    str(t["RestartCount"]),
                    _age(t.get("CreatedAt")),
                ]
                for t in sorted(tasks, key=lambda t: (t.get("Slot", 0), t.get("CreatedAt") or ""))
            ],
            colour=3,
        )


def _story_text(story: Any) -> str | None:
    """The story in `orc replay --job`'s own words, or None if the answer is not a story this
    client knows the shape of (an orc of another version)."""
    import msgspec  # the replay's types are loaded only for this command

    from orc.replay.render import job_text
    from orc.replay.story import JobStory

    try:
        return job_text(msgspec.convert(story, JobStory))
    except msgspec.ValidationError:
        return None
