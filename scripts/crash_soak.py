"""The crash loop at the issue's size: rounds of bursts of process tasks, each round with a
SIGKILL at a random moment of its burst, then the promises checked (tests/e2e/test_crash_loop.py
runs the same loop, smaller, in `make test`):

- no acknowledged task lost, none left non-terminal;
- none started twice (each task leaves a marker file named by its ID and its pid when it starts);
- each ends as its process did: Completed for exit 0, Failed with code 3 for exit 3, never
  "exit status unknown";
- `orc replay --check` passes on the manager's log.

    .venv/bin/python scripts/crash_soak.py [--mode single|split|both] [--rounds 20]
        [--burst 500] [--seed N] [--json]

`single` kills `orc` (manager and worker in one process); `split` kills `orc manager`, `orc
worker` or both. Prints one summary line per mode (and a JSON line with --json); the exit
status is 1 when a promise was broken, with examples of the tasks that broke it and the last
lines orc printed. ORC_CRASH_LOG_LEVEL sets orc's log level (WARNING); ORC_CRASH_MAX_BODY the
split cluster's ORC_MAX_BODY (orc's default, 1 MiB: a reconcile of more tasks than fit in it
is refused by the worker).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.test_crash_loop import Single, Split, crash_loop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("single", "split", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    parser.add_argument("--settle", type=float, default=300.0, help="seconds for the last tasks")
    parser.add_argument("--json", action="store_true", help="also print a JSON line per mode")
    args = parser.parse_args()

    broken = False
    modes = ("single", "split") if args.mode == "both" else (args.mode,)
    scratch = ROOT / ".bench-tmp"  # the project's disk, as bench/ uses; ignored by git
    scratch.mkdir(exist_ok=True)
    for mode in modes:
        with tempfile.TemporaryDirectory(dir=scratch) as name:
            tmp = Path(name)
            target = Single(tmp) if mode == "single" else Split(tmp)
            report = trio.run(
                crash_loop, target, tmp, args.rounds, args.burst, args.seed, args.settle
            )
        print(report.summary(), flush=True)
        for example in report.examples:
            print(f"  {example}")
        if args.json:
            data = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
            data.pop("ids")
            data["problems"] = report.problems()
            print(json.dumps(data))
        broken |= bool(report.problems())
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
