"""Jobs in the shell under trio's MockClock: the JobTimer's alarms, and a periodic job whose
runs the Manager actor launches at its cron ticks (the reconciler says when, the JobTimer
waits, the manager decides and logs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from actors import Supervisor
from orc.core.jobspec import JobSpec, PeriodicSpec, TemplateSpec
from orc.core.messages import GetJob, Hold, JobsDue, ListJobs, SubmitJob, WakeJobs
from orc.core.times import later
from orc.shell.jobtimer import JobTimer
from orc.shell.manager import Manager
from orc.shell.recovery import open_log

# the same mock wall clock and recording inbox as the restarter's tests
from tests.shell.test_restarts import T0, Inbox, _mock_now


async def test_the_job_timer_fires_each_job_at_its_time(autojump_clock: trio.abc.Clock) -> None:
    inbox = Inbox()
    sup = Supervisor("t")
    ref = sup.add("jobtimer", lambda: JobTimer(lambda: inbox, _mock_now))  # type: ignore[arg-type, return-value]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        start = trio.current_time()
        await ref.tell(WakeJobs({"a": later(T0, start + 4), "b": later(T0, start + 1)}))
        await ref.tell(WakeJobs({"a": later(T0, start + 2)}))  # a new time replaces the old
        await trio.sleep(10)
        fired = [(round(t - start, 1), m.job_ids) for t, m in inbox.got]  # type: ignore[attr-defined]
        assert fired == [(1.0, ("b",)), (2.0, ("a",))]
        assert all(isinstance(m, JobsDue) for _, m in inbox.got)
        await ref.tell(Hold())
        await ref.tell(WakeJobs({"c": later(T0, trio.current_time() + 1)}))
        await trio.sleep(5)
        assert len(inbox.got) == 2  # held: shutting down
        nursery.cancel_scope.cancel()


@pytest.fixture
def idle_jump_clock() -> MockClock:
    """Mock time that jumps only after 50 ms of real idleness: the event log writes in a
    thread, and a clock that jumped at once while it did would time out every ask."""
    return MockClock(autojump_threshold=0.05)


def _periodic(prohibit_overlap: bool) -> JobSpec:
    return JobSpec(
        id="nightly",
        type="batch",
        count=1,
        task=TemplateSpec(cmd=["true"], driver="process"),
        periodic=PeriodicSpec(cron="*/5 * * * *", prohibit_overlap=prohibit_overlap),
    )


async def _run_periodic(tmp_path: Path, prohibit_overlap: bool) -> list[dict]:
    """A manager with no workers (runs stay Pending: never done) and its JobTimer, for 11
    minutes of mock time after a periodic job is submitted at T0."""
    scheduler = Inbox()
    sup = Supervisor("t")
    refs: dict = {}
    async with await open_log(tmp_path / "log") as log, trio.open_nursery() as nursery:
        refs["manager"] = sup.add(
            "manager",
            lambda: Manager(log, scheduler, {}, jobtimer=refs["timer"], clock=_mock_now),  # type: ignore[arg-type]
        )
        refs["timer"] = sup.add("timer", lambda: JobTimer(lambda: refs["manager"], _mock_now))
        nursery.start_soon(sup.run)
        submit = SubmitJob(_periodic(prohibit_overlap), _mock_now())
        reply = await refs["manager"].ask(submit)
        assert reply.status == 201
        await trio.sleep(11 * 60)
        jobs = await refs["manager"].ask(ListJobs())
        parent = (await refs["manager"].ask(GetJob("nightly"))).body
        nursery.cancel_scope.cancel()
    return [{"ID": j.id, "Parent": j.parent, "Waiting": parent.waiting} for j in jobs]


async def test_a_periodic_job_launches_a_run_at_each_tick(
    tmp_path: Path, idle_jump_clock: MockClock
) -> None:
    jobs = await _run_periodic(tmp_path, prohibit_overlap=False)
    runs = [j["ID"] for j in jobs if j["Parent"] == "nightly"]
    # 00:05 and 00:10 UTC on 2026-01-01
    assert runs == ["nightly.periodic-1767225900", "nightly.periodic-1767226200"]


async def test_prohibit_overlap_waits_for_the_run_before(
    tmp_path: Path, idle_jump_clock: MockClock
) -> None:
    jobs = await _run_periodic(tmp_path, prohibit_overlap=True)
    runs = [j["ID"] for j in jobs if j["Parent"] == "nightly"]
    assert runs == ["nightly.periodic-1767225900"]  # the 00:10 run waits: 00:05's is not done
    assert "nightly.periodic-1767225900 is still running (ProhibitOverlap)" in jobs[0]["Waiting"]
