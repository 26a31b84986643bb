"""The `orc` command: the servers (`orc`, `orc manager`, `orc worker`), `orc replay`, and the
client commands (`orc run`, `orc ps`, ... in orc/cmd/client.py; `orc job ...` in
orc/cmd/jobs.py), on Typer.

Exit statuses, for every command: 0 success; 1 the task failed, the server said no, or orc
stopped after repeated crashes; 2 a usage error or bad input; 3 orc could not be reached.
Every failure is one line on stderr saying what to do, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from typer.exceptions import TyperException

from orc import config
from orc.cmd import client, jobs

USAGE = 2

app = typer.Typer(
    name="orc",
    help="A small container orchestrator whose state is its event log.\n\n"
    "With no command, runs a manager and ORC_WORKER_COUNT workers in one process."
    " The client commands (run, ps, status, ...) talk to ORC_ADDR"
    " (default http://127.0.0.1:8000) with ORC_TOKEN.",
    epilog="Examples: `orc` (a whole cluster here); `orc run --wait -- echo hi`; `orc ps`.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
client.register(app)
app.add_typer(jobs.app, name="job")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="event log and task directories (ORC_DATA_DIR)")
]


@app.callback()
def everything(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """Run a whole cluster in this process (with no command)."""
    ctx.obj = {"data_dir": data_dir}
    if ctx.invoked_subcommand is None:
        raise typer.Exit(_serve("cluster", _settings(data_dir)))


def _check_etcd(value: str | None) -> str | None:
    """--etcd checked as it is parsed, so a bad URL is a usage error naming it."""
    if value is not None:
        try:
            config.etcd_endpoints(value, "--etcd")
        except config.ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--etcd: ")) from None
    return value


def _check_manager_name(value: str | None) -> str | None:
    if value is not None:
        try:
            return config.manager_name(value, "--name") or None
        except config.ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--name=")) from None
    return value


@app.command()
def manager(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="address to listen on (ORC_MANAGER_HOST)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (ORC_MANAGER_PORT)")] = None,
    etcd: Annotated[
        str | None,
        typer.Option(
            metavar="URL[,URL...]",
            help="keep the event log in etcd and run as one of several highly available"
            " managers (ORC_ETCD_ENDPOINTS; default: the file log, one manager)",
            callback=_check_etcd,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="this manager's name among the managers (ORC_MANAGER_NAME; default host:port)",
            callback=_check_manager_name,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the manager alone; workers run as `orc worker` processes.

    It takes tasks over HTTP and places them on workers that register with it
    (`orc worker --manager URL`) or are listed in ORC_WORKERS. With --etcd, several managers
    share one log in etcd: one leads, the others stand by and take over when it dies
    (docs/ha.md).

    \b
    Examples:
      orc manager --port 8000 --data-dir ./data
      orc manager --etcd http://127.0.0.1:2379 --name m1
    """
    settings = _settings(
        data_dir or ctx.obj["data_dir"],
        manager_host=host,
        manager_port=port,
        etcd_endpoints=config.etcd_endpoints(etcd, "--etcd") if etcd is not None else None,
        manager_name=name,
    )
    raise typer.Exit(_serve("manager", settings))


def _parse_attrs(items: list[str], source: str = "") -> tuple[tuple[str, str], ...]:
    try:
        return config.parse_attrs(items)
    except config.ConfigError as exc:  # a usage error: `orc: Invalid value for '--attr': ...`
        raise typer.BadParameter(f"{source}{exc}") from None


def _check_attrs(items: list[str] | None) -> list[str] | None:
    """--attr's values checked as it is parsed, so a bad one is a usage error naming it."""
    _parse_attrs(items or [])
    return items


@app.command()
def worker(
    ctx: typer.Context,
    manager: Annotated[
        str,
        typer.Option(
            metavar="URL[,URL...]",
            help="the manager to register with, e.g. http://127.0.0.1:8000; with highly"
            " available managers, all of them, comma-separated: it registers with the leader"
            " (omit when the manager lists this worker in ORC_WORKERS)",
        ),
    ] = "",
    host: Annotated[str | None, typer.Option(help="listen address (ORC_WORKER_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (ORC_WORKER_PORT)")] = None,
    name: Annotated[
        str | None, typer.Option(help="node name (ORC_WORKER_NAME; default worker-<port>)")
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="a node attribute for jobs' constraints and spread, e.g. rack=a; repeat it"
            " for more (over ORC_WORKER_ATTRS)",
            callback=_check_attrs,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run one worker node; it registers (and heartbeats) with the manager at --manager.

    It runs the tasks the manager places on it and keeps its updates in its own log.
    Given several managers, it registers with the one that leads, and follows the lead.

    \b
    Examples:
      orc worker --manager http://127.0.0.1:8000 --port 8888 --attr rack=a
      orc worker --manager http://m1:8000,http://m2:8000,http://m3:8000
    """
    settings = _settings(
        data_dir or ctx.obj["data_dir"], worker_host=host, worker_port=port, worker_name=name
    )
    if attr:  # each flag over the setting's value of that attribute
        given = [f"{k}={v}" for k, v in settings.worker_attrs] + attr
        attrs = _parse_attrs(given, "--attr with ORC_WORKER_ATTRS: ")
        settings = msgspec.structs.replace(settings, worker_attrs=attrs)
    raise typer.Exit(_serve("worker", settings, manager))


@app.command()
def replay(
    ctx: typer.Context,
    data_dir: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA_DIR",
            help="an orc data dir (holding log/) or the log dir itself; default: ORC_DATA_DIR",
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(metavar="ID", help="one task's history (an ID or its prefix)")
    ] = None,
    job: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="one job's story: its versions, every decision and why, its tasks' fates",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(metavar="SEQ|TIME", help="the whole state after this seq or RFC 3339 time"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="check every transition was legal (exit 1 if not)")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
    etcd: Annotated[
        str | None,
        typer.Option(
            metavar="URL[,URL...]",
            help="read the log of highly available managers from etcd instead of a directory",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="with --etcd: the cluster's name (ORC_CLUSTER)"),
    ] = None,
) -> None:
    """Tell the story of an event log: its timeline, one task's history, one job's story, the
    state at a point, or a check that every transition was legal. Read-only: the log may be in
    use; with --etcd, the log highly available managers keep in etcd.

    Exit status: 0 ok, 1 --check found broken rules, 2 bad input.

    \b
    Examples:
      orc replay ./data --task 2665
      orc replay ./data --job web
      orc replay ./data --check
      orc replay --etcd http://127.0.0.1:2379 --task 2665
    """
    from orc.cmd import replay as replay_cli  # the reader is loaded only for this command

    given = data_dir or (str(ctx.obj["data_dir"]) if ctx.obj["data_dir"] else None)
    args = replay_cli.ReplayArgs(
        data_dir_replay=given,
        etcd=etcd,
        cluster=cluster,
        task=task,
        job=job,
        at=at,
        check=check,
        json=json,
    )
    raise typer.Exit(replay_cli.run(args))


def main(argv: list[str] | None = None) -> int:
    """Run `orc` with `argv` (default: the process's arguments); the exit status."""
    try:
        # Without standalone mode, Typer returns a command's exit status instead of exiting,
        # and raises usage errors for us to say in one line.
        status = app(args=argv, prog_name="orc", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        print("orc: interrupted", file=sys.stderr)
        return 130
    except TyperException as exc:  # a usage error (Typer's own click: UsageError, BadParameter)
        code = getattr(exc, "exit_code", USAGE)
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        print(f"orc: {exc.format_message().rstrip('.')}{hint}", file=sys.stderr)
        return code if isinstance(code, int) else USAGE
    return status if isinstance(status, int) else 0


# -- the servers ------------------------------------------------------------------------------


def _settings(data_dir: Path | None, **flags: Any) -> config.Settings:
    """ORC_* settings, with the command's flags over them."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"orc: {exc}", file=sys.stderr)
        raise typer.Exit(USAGE) from None
    changes = {k: v for k, v in flags.items() if v is not None}
    if data_dir is not None:
        changes["data_dir"] = Path(data_dir)
    if not changes:
        return settings
    fields = {f: getattr(settings, f) for f in settings.__struct_fields__}
    return config.Settings(**{**fields, **changes})


def _serve(what: str, settings: config.Settings, manager_url: str = "") -> int:
    # The servers' stack (trio, Quart, the Docker SDK) is loaded only to serve: the client
    # commands start in a fraction of the time without it.
    import trio

    from actors import EscalationError
    from eventlog import CorruptLogError
    from orc.cmd.cluster import run_cluster
    from orc.cmd.ha import run_ha_manager
    from orc.cmd.manager import run_manager
    from orc.cmd.worker import run_worker

    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per node-to-node request
    status = 0
    try:
        if what == "manager" and settings.etcd_endpoints:
            trio.run(run_ha_manager, settings, _announce)  # one of several, on etcd
        elif what == "manager":
            trio.run(run_manager, settings, _announce)
        elif what == "worker":
            trio.run(run_worker, settings, manager_url, _announce)
        else:
            trio.run(run_cluster, settings, _announce)
    except* CorruptLogError as group:
        status = _report(group, 2)
    except* EscalationError as group:
        status = _report(group, 1, "stopped after repeated crashes: ")
    except* OSError as group:
        status = _report(group, 1)
    return status


def _report(group: BaseExceptionGroup, status: int, prefix: str = "") -> int:
    for exc in _leaves(group):
        print(f"orc: {prefix}{exc}", file=sys.stderr)
    return status


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside nested exception groups (trio nests one per nursery)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _announce(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
