"""`orc replay`: read a log without touching it, and print what `orc.replay.story` makes of it.
The log is a directory, or the log of highly available managers in etcd (`--etcd`).

The I/O shell around the pure `orc.replay.story`: locating and reading the log, exit statuses, and
turning every bad input into one line on stderr (status 2), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orc import config
from orc.replay import render as replay_render
from orc.replay import story as replay
from orc.replay.read import BadInput, Log, read, read_etcd

BAD_INPUT = 2


@dataclass(frozen=True)
class ReplayArgs:
    """What `orc replay` was asked (its options, parsed by orc/cmd/main.py)."""

    data_dir_replay: str | None = None
    etcd: str | None = None  # read the log in etcd (URL,URL...) instead of a directory
    cluster: str | None = None  # the cluster's name in etcd (default: ORC_CLUSTER)
    task: str | None = None
    job: str | None = None
    at: str | None = None
    check: bool = False
    json: bool = False


def run(args: ReplayArgs) -> int:
    try:
        log = _read(args)
        status, text = _answer(args, log)
    except BadInput as exc:
        print(f"orc replay: {exc}", file=sys.stderr)
        return BAD_INPUT
    if log.base_seq and not args.json:
        print(
            f"orc replay: note: events 1-{log.base_seq} were compacted away; the story starts"
            f" from the snapshot at seq {log.base_seq}",
            file=sys.stderr,
        )
    if log.reader.torn_tail is not None and not args.json:
        torn = log.reader.torn_tail
        print(
            f"orc replay: note: {torn.path} ends in an incomplete record at offset {torn.offset}"
            f" ({torn.dropped_bytes} bytes: a crash, or a write in progress); it is left out",
            file=sys.stderr,
        )
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `orc replay | head`
        sys.stdout = None  # nothing left to flush at exit
    return status


def _read(args: ReplayArgs) -> Log:
    """The log the arguments name: etcd's (`--etcd`), or a directory's."""
    if args.etcd is None:
        if args.cluster is not None:
            raise BadInput("--cluster names a cluster in etcd: give --etcd too")
        return read(find_log(_data_dir(args)), show_progress=True)
    if args.data_dir_replay:
        raise BadInput("give a data dir or --etcd, not both")
    try:
        endpoints = config.etcd_endpoints(args.etcd, "--etcd")
        cluster = args.cluster or config.load().cluster
    except config.ConfigError as exc:
        raise BadInput(str(exc)) from None
    if not endpoints:
        raise BadInput("--etcd: give etcd's client URLs, e.g. http://127.0.0.1:2379")
    if not config.CLUSTER_NAME.match(cluster):
        raise BadInput(f"--cluster {cluster!r}: 1 to 63 letters, digits, '.', '_' or '-'")
    return read_etcd(endpoints, cluster, show_progress=True)


def _data_dir(args: ReplayArgs) -> Path:
    if args.data_dir_replay:
        return Path(args.data_dir_replay)
    try:
        return config.load().data_dir
    except config.ConfigError as exc:
        raise BadInput(str(exc)) from None


def find_log(path: Path) -> Path:
    """The log directory: `path/log` for a data dir, or `path` itself if it holds segments."""
    if not path.exists():
        raise BadInput(f"{path}: no such directory")
    if not path.is_dir():
        raise BadInput(
            f"{path} is not a directory: give an orc data dir (holding log/) or its log dir"
        )
    for candidate in (path / "log", path):
        try:
            if candidate.is_dir() and any(candidate.glob("*.seg")):
                return candidate
        except OSError as exc:
            raise BadInput(f"cannot read {candidate}: {exc.strerror}") from None
    raise BadInput(f"no event log in {path} (neither {path / 'log'} nor {path} holds .seg files)")


def _answer(args: ReplayArgs, log: Log) -> tuple[int, str]:
    """The exit status and the output text; BadInput for questions the log cannot answer."""
    render = replay_render
    records, base = log.records, log.base
    try:
        if args.at is not None:
            records = replay.until(records, replay.parse_at(args.at))
        if args.task and args.job:
            raise BadInput("--task and --job tell different stories: give one of them")
        task_id = replay.find_task(records, args.task, base) if args.task else None
        job_id = replay.find_job(records, args.job, base) if args.job else None
        if job_id is not None and not args.check:
            story = replay.job_story(records, job_id, base)
            return 0, _out(args, log, render.job_json, render.job_text, story)
        if args.check:
            result = replay.check(records, base)
            if task_id is not None:  # only that task's broken rules, and its quarantine
                result.violations = [
                    v for v in result.violations if replay.mentioned(v.record) == task_id
                ]
                result.quarantined = [q for q in result.quarantined if q.task == task_id]
                result.ok = not result.violations
            if job_id is not None:  # only the broken rules of the job and its tasks
                mine = replay.job_tasks(records, job_id, base)
                result.violations = [
                    v
                    for v in result.violations
                    if replay.job_of(v.record) == job_id or replay.mentioned(v.record) in mine
                ]
                result.quarantined = [q for q in result.quarantined if q.task in mine]
                result.ok = not result.violations
            status = 0 if result.ok else 1
            return status, _out(args, log, render.check_json, render.check_text, result)
        if task_id is not None:
            h = replay.history(records, task_id, base)
            return 0, _out(args, log, render.history_json, render.history_text, h)
        if args.at is not None:
            state = replay.state_of(records, base)
            seq, at = records[-1][0], records[-1][1].at
            return 0, _out(args, log, render.state_json, render.state_text, state, seq, at)
        rows = replay.timeline(records, base)
        return 0, _out(args, log, render.timeline_json, render.timeline_text, rows)
    except replay.ReplayError as exc:
        raise BadInput(str(exc)) from None


def _out(
    args: ReplayArgs,
    log: Log,
    as_json: Callable[..., dict[str, Any]],
    as_text: Callable[..., str],
    *what: Any,
) -> str:
    if not args.json:
        return as_text(*what)
    torn = log.reader.torn_tail
    doc = {
        "log": log.reader.directory,
        "first_seq": log.reader.first_seq,
        "last_seq": log.reader.last_seq,
        "snapshot_seq": log.base_seq or None,
        "torn_tail": msgspec.to_builtins(torn) if torn is not None else None,
        **as_json(*what),
    }
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n"
