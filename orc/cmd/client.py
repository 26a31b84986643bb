"""The client commands of `orc`: run, ps, status, stop, logs, history, nodes, events.

They speak the manager's HTTP API (docs/API.md) through httpx, with its own wire types, so
they cannot drift from it: `--json` prints the API's own JSON; the tables are for people.
Where an ID is taken, a unique prefix of one will do.

Exit statuses: 0 success; 1 the task failed or the server said no; 2 a usage error; 3 orc
could not be reached. Each failure is one line on stderr saying what to do.

ORC_ADDR / --addr may list several managers (highly available managers, docs/ha.md): each
request goes to the one that answered last, else to the next that answers; a standby's 307 is
followed to the leader with the same method, body and token.
"""

from __future__ import annotations

import json as jsonlib
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orc.http.wire import REDIRECTS, manager_urls

DEFAULT_ADDR = "http://127.0.0.1:8000"
FAILED, USAGE, UNREACHABLE = 1, 2, 3
STATE_NAMES = {0: "Pending", 1: "Scheduled", 2: "Running", 3: "Completed", -1: "Failed"}
STATE_STYLES = {
    "Pending": "yellow",
    "Scheduled": "cyan",
    "Running": "green",
    "Completed": "blue",
    "Failed": "red",
}
ENDED = {3, -1}

out = Console(highlight=False, soft_wrap=True)

Addr = Annotated[
    str,
    typer.Option(
        "--addr",
        envvar="ORC_ADDR",
        help="the manager's address; several, comma-separated, for highly available managers",
        show_default=DEFAULT_ADDR,
    ),
]
Token = Annotated[
    str, typer.Option("--token", envvar="ORC_TOKEN", help="bearer token", show_default=False)
]
Json = Annotated[bool, typer.Option("--json", help="print the API's own JSON")]


def fail(status: int, message: str) -> NoReturn:
    """One line on stderr, and the exit status."""
    print(f"orc: {message}", file=sys.stderr)
    raise typer.Exit(status)


# Methods a request may be sent again with, to another manager, after one that may have
# received it went silent: doing them twice does what doing them once does.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Api:
    """The manager's API over httpx; every failure becomes `fail` with the right status.

    `addr` is one address or several, comma-separated. A request goes to the address that
    answered last (first: the first given); when it cannot be reached or has no leader (503),
    to the next, and so on. A 307 (a standby naming the leader) is followed, by hand: httpx
    drops the token on the way to another address. The leader that answered is asked first
    next, so a command reads what it wrote."""

    def __init__(self, addr: str, token: str) -> None:
        given = addr or DEFAULT_ADDR
        self.addrs = list(manager_urls(given)) or [""]
        for one in self.addrs:
            if not one.startswith(("http://", "https://")) or not _parses(one):
                shown = addr if len(self.addrs) == 1 else one
                fail(USAGE, f"--addr must be a URL like {DEFAULT_ADDR}, got {shown!r}")
        self.addr = self.addrs[0]  # the manager that answered last
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        several = len(self.addrs) > 1
        timeout = httpx.Timeout(30, connect=5) if several else httpx.Timeout(30)
        self.http = httpx.Client(headers=headers, timeout=timeout)

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        r = self.send(method, path, **kw)
        if r.status_code in ok:
            return r.json() if r.content else None
        self.refused(r)

    def send(self, method: str, path: str, stream: bool = False, **kw: Any) -> httpx.Response:
        """The answer to `method path` from the first manager that answers (see the class);
        exit status 3 when none does. A streamed answer is the caller's to close."""
        unreachable: list[str] = []
        busy: httpx.Response | None = None  # a 503, kept in case no other manager answers
        order = [self.addr, *(a for a in self.addrs if a != self.addr)]
        for i, addr in enumerate(order):
            try:
                r = self._follow(method, addr, path, stream, kw)
            except _Unreachable as gone:
                unreachable.append(f"{gone.where} ({type(gone.exc).__name__})")
                delivered = not isinstance(gone.exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if len(order) > 1 and delivered and method.upper() not in IDEMPOTENT:
                    fail(
                        UNREACHABLE,
                        f"lost orc at {gone.where} during {method} {path}"
                        f" ({type(gone.exc).__name__}); it may have been done: look before"
                        " trying again",
                    )
                continue
            if r.status_code == 503 and i < len(order) - 1:
                r.read()
                r.close()
                busy = r  # no leader there (or too busy): the next may have one
                continue
            self.addr = _base(r.url, path)
            return r
        if busy is not None:
            return busy
        fail(
            UNREACHABLE,
            f"cannot reach orc at {', '.join(unreachable)}; is it running?"
            " Start it with `orc` (or `make run`), or point ORC_ADDR / --addr at it",
        )

    def _follow(
        self, method: str, addr: str, path: str, stream: bool, kw: dict[str, Any]
    ) -> httpx.Response:
        """`method path` at `addr`, and again at each 307's Location (at most REDIRECTS
        hops, as the worker follows them)."""
        url, where = addr + path, addr
        for _ in range(REDIRECTS + 1):  # the first request, then one per hop
            try:
                r = self.http.send(self.http.build_request(method, url, **kw), stream=stream)
            except httpx.TransportError as exc:
                raise _Unreachable(where, exc) from None
            location = r.headers.get("location")
            if r.status_code not in (307, 308) or not location:
                return r
            r.read()
            r.close()
            try:
                target = r.url.join(location)
            except httpx.InvalidURL:
                return r  # said as the 307 it is
            if target.query:  # the Location carries the query already
                kw = {k: v for k, v in kw.items() if k != "params"}
            url, where = str(target), _base(target, path)
        return r

    def refused(self, r: httpx.Response) -> NoReturn:
        try:
            message = r.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text.strip() or r.reason_phrase
        if r.status_code == 401:
            message += " (set ORC_TOKEN or --token)"
        fail(FAILED, f"{r.status_code}: {message}")

    def stream(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """The NDJSON lines of a streaming GET."""
        r = self.send("GET", path, stream=True, params=params, timeout=None)
        try:
            if r.status_code != 200:
                r.read()
                self.refused(r)
            for line in r.iter_lines():
                if line.strip():
                    yield jsonlib.loads(line)
        except httpx.TransportError as exc:
            fail(UNREACHABLE, f"lost orc at {self.addr} ({type(exc).__name__})")
        finally:
            r.close()

    def task_id(self, given: str) -> str:
        """The full ID for `given`, which may be a unique prefix of one."""
        try:
            return str(uuid.UUID(given))
        except ValueError:
            pass
        wanted = given.lower()
        matches = [t["ID"] for t in self.request("GET", "/tasks") if t["ID"].startswith(wanted)]
        if len(matches) == 1:
            return str(matches[0])
        if not matches:
            fail(FAILED, f"no task with an ID starting {given!r}; `orc ps` lists them")
        fail(USAGE, f"{given!r} starts {len(matches)} task IDs; give more of it")


# -- the commands -----------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    for command in (run, ps, status, stop, logs, history, nodes, events):
        app.command()(command)


def run(
    cmd: Annotated[
        list[str] | None, typer.Argument(help="the command and its arguments (after --)")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="a task as JSON or TOML (API keys)")
    ] = None,
    image: Annotated[str, typer.Option(help="run this image as a Docker container")] = "",
    name: Annotated[str, typer.Option(help="a name for people")] = "",
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=value")] = None,
    cpu: Annotated[float, typer.Option(help="cores")] = 0.0,
    memory: Annotated[int, typer.Option(help="bytes")] = 0,
    disk: Annotated[int, typer.Option(help="bytes")] = 0,
    port: Annotated[
        list[str] | None, typer.Option("--port", "-p", help="80/tcp or 8080:80/tcp (host:task)")
    ] = None,
    restart: Annotated[str, typer.Option(help="no, on-failure, always")] = "",
    health_check: Annotated[str, typer.Option(help="a path such as /health")] = "",
    task_id: Annotated[str, typer.Option("--id", help="the task's UUID (default: a new one)")] = "",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="wait until it runs, or until it ends if it ends first; exit 1 if it failed",
        ),
    ] = False,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """Run a task: a command as a local process, or an image as a container.

    \b
    Examples:
      orc run --name hello --wait -- sh -c 'echo hello'
      orc run --image busybox:latest -p 8080:80/tcp --restart on-failure
      orc run -f task.toml --wait
    """
    api = Api(addr, token)
    task = _task_from_file(file) if file else {}
    flags: dict[str, Any] = {
        "Name": name,
        "Image": image,
        "Cmd": cmd or None,
        "Env": env or None,
        "CPU": cpu,
        "Memory": memory,
        "Disk": disk,
        "RestartPolicy": restart,
        "HealthCheck": health_check,
        "ID": task_id,
    }
    task.update({k: v for k, v in flags.items() if v})
    for spec in port or ():
        host, _, inside = spec.rpartition(":")
        inside = inside if "/" in inside else f"{inside}/tcp"
        task.setdefault("ExposedPorts", {})[inside] = {}
        if host:
            task.setdefault("PortBindings", {})[inside] = host
    if not task.get("Cmd") and not task.get("Image"):
        fail(USAGE, "nothing to run: give a command after `--`, --image, or -f FILE")
    body = {"State": 2, "Task": task}
    if task.get("ID"):
        body["ID"] = task["ID"]
    recorded = api.request("POST", "/tasks", ok=(200, 201), json=body)
    task_id = recorded["Task"]["ID"]
    if not wait:
        _print(json, recorded, lambda: out.print(task_id))
        return
    final = _wait_for(api, task_id)
    _print(json, final, lambda: out.print(f"{task_id} {_state_text(final)}"))
    if final["State"] == -1:
        fail(FAILED, f"task {task_id} failed: {final.get('Error') or 'no reason given'}")


def ps(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="only these states (Running, Failed, ...)"),
    ] = None,
    node: Annotated[str, typer.Option(help="only tasks on this node")] = "",
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """List tasks: ID, name, state, node, restarts, age.

    \b
    Example:
      orc ps --state Running --node worker-1
    """
    wanted = {s.capitalize() for s in state or ()}
    unknown = wanted - set(STATE_STYLES)
    if unknown:
        fail(USAGE, f"unknown state {sorted(unknown)[0]!r}; one of {', '.join(STATE_STYLES)}")
    tasks = Api(addr, token).request("GET", "/tasks")
    shown = [
        t
        for t in tasks
        if (not wanted or STATE_NAMES.get(t["State"]) in wanted) and (not node or t["Node"] == node)
    ]
    if json:
        out.print(jsonlib.dumps(shown), markup=False)
        return
    rows = [
        [
            t["ID"][:8],
            t["Name"] or "-",
            _state_word(t),
            t["Node"] or "-",
            str(t["RestartCount"]),
            _age(t.get("CreatedAt")),
        ]
        for t in sorted(shown, key=lambda t: t.get("CreatedAt") or "")
    ]
    _columns(["ID", "NAME", "STATE", "NODE", "RESTARTS", "AGE"], rows, colour=2)


def status(
    task_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="a task ID or a unique prefix")
    ] = None,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster", help="the managers instead: who leads, each one's log position, etcd"
        ),
    ] = False,
) -> None:
    """Everything about one task: its spec, where it runs, why it waits or failed. With
    --cluster, the managers: the leader, the standbys, the etcd members.

    \b
    Examples:
      orc status 2665
      orc status --cluster
    """
    api = Api(addr, token)
    if cluster:
        if task_id is not None:
            fail(USAGE, "orc status takes a task ID or --cluster, not both")
        _cluster_status(api.request("GET", "/cluster"), json)
        return
    if task_id is None:
        fail(USAGE, "orc status needs a task ID (or --cluster); see `orc status --help`")
    task = api.request("GET", f"/tasks/{api.task_id(task_id)}")
    if json:
        out.print(jsonlib.dumps(task), markup=False)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in task.items():
        if key == "State":
            table.add_row(key, _state_text(task))
        elif key != "StateName" and value not in (None, "", [], {}):
            table.add_row(key, value if isinstance(value, str) else jsonlib.dumps(value))
    out.print(table)
    reason = task.get("Error")
    if reason and task["State"] == 0:
        out.print(f"waiting: {reason}", markup=False)
    elif reason:
        out.print(f"error: {reason}", markup=False)


def _cluster_status(view: dict[str, Any], as_json: bool) -> None:
    """`GET /cluster` as tables: the managers (the leader first), then etcd's members."""
    if as_json:
        out.print(jsonlib.dumps(view), markup=False)
        return
    leader = view.get("Leader") or {}
    etcd = view.get("Etcd")
    said = f"leader {leader['Name']} since {_when(leader['Since'])}" if leader else "no leader"
    out.print(f"cluster {view['Cluster']}: {said}", markup=False)
    managers = sorted(view["Managers"], key=lambda m: (m["Role"] != "leader", m["Name"]))
    rows = [
        [
            m["Name"],
            m["Role"],
            m["Address"],
            str(m["LogSeq"]),
            _age(m["Heartbeat"]) if m.get("Heartbeat") else "-",
        ]
        for m in managers
    ]
    _columns(["MANAGER", "ROLE", "ADDRESS", "LOG SEQ", "HEARD"], rows)
    if etcd is None:
        out.print("one manager with its file log (no etcd)", markup=False)
        return
    out.print(
        f"etcd {', '.join(etcd['Endpoints'])}: log seq {etcd['LogFirstSeq']} to"
        f" {etcd['LogLastSeq']}",
        markup=False,
    )
    members = [
        [m["Name"], "leader" if m["IsLeader"] else "follower", ",".join(m["ClientURLs"])]
        for m in etcd["Members"]
    ]
    _columns(["ETCD MEMBER", "ROLE", "CLIENT URLS"], members)


def stop(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="a task ID or a unique prefix")],
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
) -> None:
    """Stop a task (SIGTERM, then SIGKILL after the grace period); it ends Completed.

    \b
    Example:
      orc stop 2665
    """
    api = Api(addr, token)
    full = api.task_id(task_id)
    api.request("DELETE", f"/tasks/{full}", ok=(204,))
    out.print(f"stopping {full}")


def logs(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="a task ID or a unique prefix")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the task ends")
    ] = False,
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
) -> None:
    """Print a task's output: stdout, then stderr (on stderr).

    \b
    Example:
      orc logs -f 2665
    """
    api = Api(addr, token)
    full = api.task_id(task_id)
    seen_out = seen_err = 0
    while True:
        task = api.request("GET", f"/tasks/{full}")
        got = api.request("GET", f"/tasks/{full}/logs")
        stdout, stderr = got["Stdout"], got["Stderr"]
        sys.stdout.write(stdout[seen_out:])
        sys.stderr.write(stderr[seen_err:])
        sys.stdout.flush()
        seen_out, seen_err = len(stdout), len(stderr)
        if not follow or task["State"] in ENDED:
            return
        time.sleep(0.5)  # one task's output, twice a second: no storm


def history(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="a task ID or a unique prefix")],
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """A task's transitions, with times and reasons, from the event log.

    \b
    Example:
      orc history 2665
    """
    api = Api(addr, token)
    story = api.request("GET", f"/tasks/{api.task_id(task_id)}/history")
    if json:
        out.print(jsonlib.dumps(story), markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("SEQ", "AT", "EVENT", "FROM", "TO", "NODE", "REASON"):
        table.add_column(column, overflow="fold")
    for row in story["rows"]:
        table.add_row(
            str(row["seq"]),
            _when(row["at"]),
            row["event"],
            row["from"] or "",
            row["to"] or "",
            row["node"],
            row["reason"],
        )
    out.print(table)
    totals = ", ".join(f"{state} {seconds:.1f}s" for state, seconds in story["totals"].items())
    if totals:
        out.print(f"time in each state: {totals}", markup=False)


def nodes(addr: Addr = DEFAULT_ADDR, token: Token = "", json: Json = False) -> None:
    """Worker nodes: attributes, capacity, what is allocated, heartbeat age, up or down.

    \b
    Example:
      orc nodes
    """
    views = Api(addr, token).request("GET", "/nodes")
    if json:
        out.print(jsonlib.dumps(views), markup=False)
        return
    table = Table(box=None, pad_edge=False)
    columns = ("NAME", "STATE", "ADDRESS", "DRIVERS", "ATTRS", "CPU", "MEMORY", "TASKS", "HEARD")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for n in views:
        used = n["Allocated"]
        table.add_row(
            n["Name"],
            n["State"] if n["State"] == "up" else f"[red]{n['State']}[/red]",
            n["Address"],
            ",".join(n["Drivers"]),
            _attrs(n.get("Attrs")),
            f"{used['CPU']:g}/{n['Cores']}",
            f"{_bytes(used['Memory'])}/{_bytes(n['Memory'])}",
            str(n["TaskCount"]),
            _age(n.get("LastHeartbeat")) if n.get("LastHeartbeat") else "-",
        )
    out.print(table)


def _attrs(attrs: dict[str, str] | None, width: int = 40) -> str:
    """`rack=a,zone=z1`, cut at `width` (`--json` has them all); `-` for none. Escaped: an
    attribute's value is the operator's text, not Rich markup."""
    text = ",".join(f"{k}={v}" for k, v in (attrs or {}).items()) or "-"
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    after: Annotated[int, typer.Option(metavar="SEQ", help="start after this sequence number")] = 0,
    task: Annotated[str, typer.Option(metavar="ID", help="only events about this task")] = "",
    addr: Addr = DEFAULT_ADDR,
    token: Token = "",
    json: Json = False,
) -> None:
    """The event log: every change, in order (then live, with -f).

    \b
    Example:
      orc events --after 100 -f
    """
    api = Api(addr, token)
    last = api.request("GET", "/stats")["LogSeq"]
    if after > last:
        fail(USAGE, f"--after {after} is beyond the log's last sequence {last}")
    if not follow and after >= last:
        return
    params: dict[str, Any] = {"after": after}
    if task:
        params["task"] = api.task_id(task)
    for line in api.stream("/events", **params):
        seq = line.get("Seq", 0)
        if "Event" in line:
            if json:
                out.print(jsonlib.dumps(line), markup=False)
            else:
                out.print(_event_text(seq, line["Event"]), markup=False)
        if not follow and seq >= last:
            return


# -- helpers ----------------------------------------------------------------------------------


class _Unreachable(Exception):
    """No answer from the manager at `where`."""

    def __init__(self, where: str, exc: httpx.TransportError) -> None:
        super().__init__(where)
        self.where, self.exc = where, exc


def _parses(url: str) -> bool:
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return True


def _base(url: httpx.URL, path: str) -> str:
    """The address of the manager that answered `url`, a request for `path` there."""
    full = str(url.copy_with(query=None))
    if path and full.endswith(path):
        return full[: -len(path)]
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _task_from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        fail(USAGE, f"cannot read {path}: {exc.strerror}")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else jsonlib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        fail(USAGE, f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}")
    if isinstance(data, dict) and isinstance(data.get("Task"), dict):
        data = data["Task"]  # a whole TaskEvent
    if not isinstance(data, dict):
        fail(USAGE, f"{path}: expected a task object (API keys: Name, Cmd, Image, ...)")
    return data


SETTLE = 0.3  # seconds `run --wait` watches a task that runs, in case it ends at once


def _wait_for(api: Api, task_id: str) -> dict[str, Any]:
    """Poll until the task runs or ends (a short interval: one task, one request). A task
    seen running is watched a moment longer: a command that fails at once (`exit 3`, a
    missing file) is then reported failed, not running, however the polls fall."""
    settled: float | None = None
    while True:
        task: dict[str, Any] = api.request("GET", f"/tasks/{task_id}")
        if task["State"] in ENDED:
            return task
        if task["State"] == 2:
            settled = settled or time.monotonic() + SETTLE
            if time.monotonic() >= settled:
                return task
            time.sleep(0.05)
            continue
        time.sleep(0.1)


def _print(as_json: bool, body: Any, human: Any) -> None:
    if as_json:
        out.print(jsonlib.dumps(body), markup=False)
    else:
        human()


def _columns(headers: list[str], rows: list[list[str]], colour: int = -1) -> None:
    """An aligned table, written directly: Rich lays out 10,000 rows in seconds, and `orc ps`
    must answer within one. Column `colour` (a state word) is coloured on a terminal."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    ansi = sys.stdout.isatty()
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        if ansi and 0 <= colour < len(cells):
            word = row[colour].split(" ")[0]
            code = ANSI.get(STATE_STYLES.get(word, ""), "")
            cells[colour] = f"{code}{cells[colour]}\x1b[0m" if code else cells[colour]
        lines.append("  ".join(cells).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


ANSI = {
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
    "green": "\x1b[32m",
    "blue": "\x1b[34m",
    "red": "\x1b[31m",
}


def _state_word(task: dict[str, Any]) -> str:
    name = STATE_NAMES.get(task["State"], str(task["State"]))
    return name + (f" (exit {task['ExitCode']})" if task.get("ExitCode") not in (None, 0) else "")


def _state_text(task: dict[str, Any]) -> str:
    name = STATE_NAMES.get(task["State"], str(task["State"]))
    extra = f" (exit {task['ExitCode']})" if task.get("ExitCode") not in (None, 0) else ""
    return f"[{STATE_STYLES.get(name, 'white')}]{name}[/]{extra}"


def _event_text(seq: int, event: dict[str, Any]) -> str:
    what = event.get("Type", "?")
    subject = event.get("TaskID") or (event.get("Task") or {}).get("ID") or event.get("Node", "")
    if isinstance(subject, dict):
        subject = subject.get("Name", "")
    detail = event.get("Reason") or event.get("Error") or ""
    return f"{seq:>8} {_when(event.get('At', ''))} {what} {subject} {detail}".rstrip()


def _when(at: str) -> str:
    """`2026-12-02T02:43:07.340359+00:00` as `2026-12-02 02:43:07.340`, as `orc replay` shows it."""
    return at[:23].replace("T", " ")


def _age(at: str | None) -> str:
    if not at:
        return "-"
    try:
        then = datetime.fromisoformat(at)
    except ValueError:
        return "-"
    seconds = max(0.0, (datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:g}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TiB"
