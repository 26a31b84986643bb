"""The golden logs: 473 events of every type each, written by `scripts/golden_log.py` with the
real manager, in every format orc has written, kept as they were written:

- `events-v1`: orc before events had versions (commit fc6ed5e): msgpack maps with `Type`;
- `events-v1-arrays`: the array records event versions began with, every event at version 1.

Every later orc must load each through its real reading paths and replay it to exactly the
state digest recorded beside it. If one of these tests fails, the change that made it fail
broke old logs: write an upcaster (docs/replay.md) rather than touch the golden files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from msgspec.structs import replace

from eventlog import EventLog, open_readonly
from orc.cmd.main import main
from orc.core.events import (
    ALL_EVENTS,
    JOB_EVENTS,
    AnyEvent,
    NodeJoined,
    StateDigest,
    TaskExited,
    TaskHealthy,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
    to_wire,
)
from orc.core.model import NodeInfo, Task
from orc.core.snapshot import state_digest
from orc.core.state import replay
from orc.replay.read import read
from orc.shell.recovery import load_state, open_log, recover

HERE = Path(__file__).parent / "golden"
MAPS, ARRAYS = HERE / "events-v1", HERE / "events-v1-arrays"
GOLDEN = [MAPS, ARRAYS]


def expected(golden: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((golden / "expected.json").read_text())
    return found


@pytest.fixture(params=GOLDEN, ids=lambda golden: golden.name)
def golden(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture
def log_dir(golden: Path, tmp_path: Path) -> Path:
    """A copy of a golden log: opening a log for writing takes its lock and may repair it,
    and the golden files must stay exactly as they were written."""
    shutil.copytree(golden / "log", tmp_path / "log")
    return tmp_path / "log"


def test_the_golden_files_are_as_written(golden: Path) -> None:
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in golden.glob("log/*")}
    assert found == expected(golden)["segments"], "a golden log must never be rewritten"


def test_it_covers_every_event_type(golden: Path) -> None:
    """Every event type there was when the golden logs were written (jobs and `TaskHealthy`
    came later: their events are replayed by the job tests' own logs)."""
    want = expected(golden)
    newer = {cls.__name__ for cls in (*JOB_EVENTS, TaskHealthy)}
    assert set(want["counts"]) == {cls.__name__ for cls in ALL_EVENTS} - newer
    assert sum(want["counts"].values()) == want["last_seq"]


def test_both_formats_tell_the_same_story() -> None:
    """The same scenario, so the same events (but for the wall-clock time of each digest and
    the order of the tasks a purge forgets at once) and the same final state."""

    def story(golden: Path) -> list[bytes]:
        events = [e for _, e in read(golden / "log").records]
        timeless = [replace(e, at="") if isinstance(e, StateDigest) else e for e in events]
        return sorted(msgspec.msgpack.encode(e) for e in timeless)

    assert story(MAPS) == story(ARRAYS)
    assert expected(MAPS)["state_digest"] == expected(ARRAYS)["state_digest"]


async def test_the_manager_recovers_the_recorded_state(golden: Path, log_dir: Path) -> None:
    """The manager's own start-up path: `open_log` (every segment checked, the lock taken),
    then `recover` (no snapshot here: the whole log is replayed)."""
    want = expected(golden)
    async with await open_log(log_dir) as log:
        assert (log.first_seq, log.last_seq, log.recovery) == (1, want["last_seq"], None)
        state, base = await recover(log)
        assert base == 0
        assert state_digest(state) == want["state_digest"]
        assert (len(state.tasks), len(state.nodes)) == (want["tasks"], want["nodes"])
        counts = Counter(type(event).__name__ for _, event in log.read())
        assert dict(counts) == want["counts"]
        loaded = await trio.to_thread.run_sync(load_state, log)
        assert state_digest(loaded) == want["state_digest"]


def test_orc_replay_reads_the_recorded_state(golden: Path) -> None:
    """`orc replay`'s reading path, read-only, on the golden files themselves."""
    want = expected(golden)
    log = read(golden / "log")
    assert (log.base, log.base_seq, log.reader.torn_tail) == (None, 0, None)
    assert [seq for seq, _ in log.records] == list(range(1, want["last_seq"] + 1))
    assert state_digest(replay(e for _, e in log.records)) == want["state_digest"]


def test_orc_replay_check_passes(golden: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every transition legal, and each `StateDigest` the manager recorded as it wrote the
    log matches what today's `apply` rebuilds at that point."""
    assert main(["replay", str(golden), "--check"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"OK: {expected(golden)['last_seq']} events, 14 tasks, 3 nodes:"
        " every transition legal, every invariant holds\n"
    )


# Keys a task and a node gained with jobs (`orc.core.model`): an old record shows them at
# their defaults.
ADDED = {
    "JobID": "",
    "JobVersion": 0,
    "Slot": 0,
    "Constraints": None,
    "Spread": "",
    "Attrs": None,
}


def _without_added(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_added(v) for k, v in value.items() if not (k in ADDED and v == ADDED[k])
        }
    if isinstance(value, list):
        return [_without_added(v) for v in value]
    return value


def test_the_wire_shows_each_record_as_the_old_orc_wrote_it() -> None:
    """An old record is an object with `Type` and PascalCase keys, the JSON that `GET /events`
    has always sent: today's wire form of the upcast event is that same JSON, byte for byte,
    once the keys jobs added (at their defaults) are set aside; those come after the old ones."""
    maps = open_readonly(MAPS / "log", dict[str, Any])  # as stored: plain maps
    events = read(MAPS / "log").records
    for (seq, stored), (_, event) in zip(maps.read(), events, strict=True):
        today = msgspec.json.decode(msgspec.json.encode(to_wire(event)))
        assert msgspec.json.encode(_without_added(today)) == msgspec.json.encode(stored), seq


async def test_an_old_log_goes_on_in_todays_format(golden: Path, log_dir: Path) -> None:
    """Today's orc appends to an older log in today's format; both kinds of frame read back."""
    last = expected(golden)["last_seq"]
    node = NodeInfo(name="worker-9", address="10.0.0.9:8888", drivers=("process",), cores=2)
    at = "2026-11-28T13:00:00+00:00"
    task = Task(id="99999999-0000-4000-8000-000000000009", name="new", cmd=["true"])
    new: list[AnyEvent] = [
        NodeJoined(at=at, node=node),
        TaskSubmitted(at=at, task=msgspec.structs.replace(task, driver="process")),
        TaskScheduled(at=at, task_id=task.id, node="worker-9"),
        TaskStarted(at=at, task_id=task.id, node="worker-9", container_id="pid-1"),
        TaskExited(at=at, task_id=task.id, node="worker-9", exit_code=0),
    ]
    async with await open_log(log_dir) as log:
        old_state, _ = await recover(log)
        await log.append_batch(new)
    async with await open_log(log_dir) as log:
        state, _ = await recover(log)
        assert [e for _, e in log.read(last + 1)] == new
    assert state_digest(state) == state_digest(replay(new, old_state))
    # the new records are arrays that start with their tag
    tail = list(open_readonly(log_dir, list[Any]).read(last + 1))
    assert [record[0] for _, record in tail] == [type(e).__name__ for e in new]


def test_without_its_upcaster_the_map_log_is_refused(tmp_path: Path) -> None:
    """The fast decoder alone refuses old records rather than misreading them."""
    with pytest.raises(Exception, match="undecodable records"):
        list(open_readonly(MAPS / "log", AnyEvent).read())


async def test_opening_for_writing_changes_nothing(golden: Path, log_dir: Path) -> None:
    """Opening a golden log for writing (the lock, the segment check) changes none of it."""
    async with await EventLog.open(log_dir, AnyEvent):
        pass
    for name, digest in expected(golden)["segments"].items():
        assert hashlib.sha256((log_dir / name).read_bytes()).hexdigest() == digest


async def test_a_log_from_a_newer_orc_is_refused_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class FutureStarted(msgspec.Struct, tag="TaskStarted.v2", array_like=True):
        task_id: str
        at: str

    async with await EventLog.open(tmp_path / "log", FutureStarted) as log:
        await log.append(FutureStarted("t", "2030-01-01T00:00:00+00:00"))
    assert main(["replay", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    segment = tmp_path / "log" / "00000000000000000001.seg"
    assert err == (
        f"orc replay: {segment} at offset 8: undecodable records ('TaskStarted.v2' is version 2"
        " of TaskStarted, and this orc knows versions 1 to 1: the log was written by a newer"
        " orc)\n"
    )
