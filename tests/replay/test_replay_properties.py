"""Property tests on real files (issue 13): whatever events a log holds, legal or not, the
manager's start-up (`recover`: the newest snapshot, then the events after it) and `orc replay`
(`orc.replay.read` and the story) rebuild the state the live manager had, for a snapshot taken
after any event; and `orc replay` on a damaged log reads a prefix or names the file and offset.

The pure versions of these properties, with many more examples, are in
tests/core/test_total_core_properties.py; these go through the files once per example.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orc.core.events import AnyEvent
from orc.core.snapshot import encode_state, state_digest
from orc.core.state import ClusterState, apply
from orc.replay import story
from orc.replay.read import BadInput, read
from orc.shell.recovery import open_log, recover
from tests.core.strategies import event_lists
from tests.replay.test_replay import known_events

FILES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def live(events: list[AnyEvent]) -> ClusterState:
    state = ClusterState()
    for event in events:
        apply(state, event)
    return state


@FILES
@given(events=event_lists(max_size=30), split=st.integers(min_value=0, max_value=40))
def test_recover_and_orc_replay_rebuild_the_live_state(events: list[AnyEvent], split: int) -> None:
    split = min(split, len(events))
    want = state_digest(live(events))

    async def write_and_recover(directory: Path) -> ClusterState:
        async with await open_log(directory) as log:
            await log.append_batch(events[:split])
            if split:
                await log.save_snapshot(split, encode_state(live(events[:split])))
            await log.append_batch(events[split:])
        async with await open_log(directory) as log:
            state, base = await recover(log)
        assert base == split
        return state

    with tempfile.TemporaryDirectory() as tmp:
        if not events:
            return
        assert state_digest(trio.run(write_and_recover, Path(tmp))) == want
        log = read(Path(tmp))
        assert state_digest(story.state_of(log.records, log.base)) == want


@pytest.fixture(scope="module")
def orc_log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """`known_events()` in small segments, as files."""
    directory = tmp_path_factory.mktemp("orc-log")

    async def write() -> None:
        async with await open_log(directory, segment_bytes=600) as log:
            for event in known_events():
                await log.append(event)

    trio.run(write)
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.seg"))}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_orc_replay_reads_a_damaged_log_as_a_prefix_or_names_the_damage(
    orc_log: dict[str, bytes], data: st.DataObject
) -> None:
    names = list(orc_log)
    name = data.draw(st.one_of(st.just(names[-1]), st.sampled_from(names)))
    offset = data.draw(st.integers(0, len(orc_log[name])))
    cut = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        for each, content in orc_log.items():
            if each == name:
                flipped = bytes([content[offset] ^ 0x5A]) if offset < len(content) else b""
                content = (
                    content[:offset] if cut else content[:offset] + flipped + content[offset + 1 :]
                )
            (Path(tmp) / each).write_bytes(content)
        try:
            records = read(Path(tmp)).records
        except BadInput as exc:
            # e.g. `.../00000000000000000001.seg at offset 8: checksum mismatch`
            assert f"{Path(tmp)}/" in str(exc) and " at offset " in str(exc)
        else:
            assert records == list(enumerate(known_events(), 1))[: len(records)]
