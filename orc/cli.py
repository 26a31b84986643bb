"""The `orc` command."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from actors import EscalationError
from eventlog import CorruptLogError
from orc import config, replay_cli
from orc.node import run_cluster


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orc",
        description="A small container orchestrator whose state is its event log. With no"
        " command, runs a manager and ORC_WORKER_COUNT workers in one process.",
    )
    parser.add_argument("--data-dir", help="event log and task directories (ORC_DATA_DIR)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    replay_cli.add_parser(commands)
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
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status = 0
    try:
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


def _fields(settings: config.Settings) -> dict[str, object]:
    return {f: getattr(settings, f) for f in settings.__struct_fields__}


def _announce(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
