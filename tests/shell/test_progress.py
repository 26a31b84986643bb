"""Progress of long work: a bar on a terminal, a log line every few seconds otherwise, nothing
for a job too short to need it, and nothing per item on the hot path."""

from __future__ import annotations

import io
import logging

import pytest

from orc.progress import Progress, in_chunks


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gets_a_log_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orc")
    progress = Progress("recovering", 1000, stream=io.StringIO(), every=0.0, delay=0.0)
    chunks = list(in_chunks(range(1000), progress, size=400))
    assert [len(c) for c in chunks] == [400, 400, 200]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [
        "recovering: 400 of 1000 (40%)",
        "recovering: 800 of 1000 (80%)",
        "recovering: 1000 of 1000 (100%)",
    ]


def test_a_short_job_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orc")
    stream = Terminal()
    with Progress("reading", 10, stream=stream, every=0.0, delay=60.0) as progress:
        for done in range(10):
            progress.advance_to(done)
    assert caplog.records == [] and stream.getvalue() == ""


def test_a_terminal_gets_a_bar() -> None:
    stream = Terminal()
    with Progress("reading the log", 100, stream=stream, every=0.0, delay=0.0) as progress:
        for chunk in in_chunks(range(100), progress, size=50):
            assert chunk
    assert "reading the log" in stream.getvalue()
