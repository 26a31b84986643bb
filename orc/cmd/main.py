"""The `orc` command."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import trio

from actors import EscalationError
from eventlog import CorruptLogError
from orc import config
from orc.cmd import replay as replay_cli
from orc.cmd.cluster import run_cluster
from orc.cmd.manager import run_manager
from orc.cmd.worker import run_worker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orc",
        description="A small container orchestrator whose state is its event log. With no"
        " command, runs a manager and ORC_WORKER_COUNT workers in one process.",
    )
    parser.add_argument("--data-dir", help="event log and task directories (ORC_DATA_DIR)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    replay_cli.add_parser(commands)
    manager = commands.add_parser(
        "manager",
        help="run the manager alone; workers run as `orc worker` processes",
        description="The manager alone: it takes tasks over HTTP and places them on workers"
        " that register with it (`orc worker --manager URL`) or are listed in ORC_WORKERS.",
    )
    manager.add_argument("--host", help="address to listen on (ORC_MANAGER_HOST)")
    manager.add_argument("--port", type=int, help="port to listen on (ORC_MANAGER_PORT)")
    manager.add_argument("--data-dir", dest="node_data_dir", help="event log (ORC_DATA_DIR)")
    worker = commands.add_parser(
        "worker",
        help="run one worker node; it registers with the manager at --manager",
        description="One worker node: it runs the tasks the manager places on it, keeps its"
        " updates in its own log and registers (and heartbeats) with the manager.",
    )
    worker.add_argument(
        "--manager",
        default="",
        metavar="URL",
        help="the manager to register with, e.g. http://127.0.0.1:8000 (omit when the"
        " manager lists this worker in ORC_WORKERS)",
    )
    worker.add_argument("--host", help="address to listen on (ORC_WORKER_HOST)")
    worker.add_argument("--port", type=int, help="port to listen on (ORC_WORKER_PORT)")
    worker.add_argument("--name", help="node name (ORC_WORKER_NAME; default worker-<port>)")
    worker.add_argument(
        "--data-dir", dest="node_data_dir", help="its log and task directories (ORC_DATA_DIR)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        if args.data_dir and not args.data_dir_replay:  # `orc --data-dir X replay`
            args.data_dir_replay = args.data_dir
        return replay_cli.run(args)
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"orc: {exc}", file=sys.stderr)
        return 2
    if args.data_dir:
        settings = config.Settings(**{**_fields(settings), "data_dir": config.Path(args.data_dir)})
    if args.command in ("manager", "worker"):
        settings = _node_settings(args, settings)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per node-to-node request
    status = 0
    try:
        if args.command == "manager":
            trio.run(run_manager, settings, _announce)
        elif args.command == "worker":
            trio.run(run_worker, settings, args.manager, _announce)
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


def _node_settings(args: argparse.Namespace, settings: config.Settings) -> config.Settings:
    """Flags of `orc manager` and `orc worker` over the ORC_* settings."""
    changes: dict[str, Any] = {}
    prefix = "manager" if args.command == "manager" else "worker"
    if args.host:
        changes[f"{prefix}_host"] = args.host
    if args.port:
        changes[f"{prefix}_port"] = args.port
    if args.node_data_dir:
        changes["data_dir"] = config.Path(args.node_data_dir)
    if getattr(args, "name", None):
        changes["worker_name"] = args.name
    return config.Settings(**{**_fields(settings), **changes})


def _fields(settings: config.Settings) -> dict[str, Any]:
    return {f: getattr(settings, f) for f in settings.__struct_fields__}


def _announce(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
