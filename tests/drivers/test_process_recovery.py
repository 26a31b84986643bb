"""The process driver across a restart of its worker: each task's shim outlives the worker and
records how the process ended; a restarted driver reads it, adopts what still runs, and never
starts an attempt twice, whatever state the crash left the task's directory in.

"The worker restarts" here is a driver whose launcher is closed (as the end of its worker
closes it) and a new driver on the same directory; tests/e2e kill real orc processes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import uuid
from pathlib import Path

import msgspec
import psutil
import pytest
import trio

from orc.core.model import Task
from orc.drivers.base import (
    Exit,
    LaunchIntent,
    append_line,
    read_exit_record,
    read_intent,
    record_exit,
    write_intent,
)
from orc.drivers.process import (
    TASK_PATH,
    UNCERTAIN_START,
    UNKNOWN_SHIM_GONE,
    LaunchRequest,
    ProcessDriver,
    ProcessHandle,
    RunRecord,
)
from orc.drivers.shim import start_ticks


def _task(cmd: list[str], restart_count: int = 0) -> Task:
    return Task(
        id=str(uuid.uuid4()), name="t", cmd=cmd, driver="process", restart_count=restart_count
    )


async def _restarted(driver: ProcessDriver) -> ProcessDriver:
    """The driver's worker ends (its launcher with it); a new one starts on the same root."""
    await driver.aclose()
    return ProcessDriver(driver.root, stop_grace=1)


async def _output(driver: ProcessDriver, task_id: str) -> str:
    return (await driver.logs(task_id))[0].decode()


async def test_a_task_that_ends_while_no_worker_runs_keeps_its_exit_status(
    tmp_path: Path,
) -> None:
    first = ProcessDriver(tmp_path, stop_grace=1)
    ok = _task(["sh", "-c", "sleep 0.3"])
    bad = _task(["sh", "-c", "sleep 0.3; exit 7"])
    killed = _task(["sleep", "30"])
    still = _task(["sh", "-c", "sleep 1.5; exit 5"])
    handles = {t.id: await first.start(t) for t in (ok, bad, killed, still)}
    second = await _restarted(first)
    target = handles[killed.id]
    assert isinstance(target, ProcessHandle)
    os.kill(target.pid, signal.SIGKILL)
    await trio.sleep(1.0)  # ok, bad and killed end while no worker watches them

    assert await second.find(ok) == Exit(0, "")
    assert await second.find(bad) == Exit(7, "exited with status 7")
    assert await second.find(killed) == Exit(137, "killed by SIGKILL")
    # one still running is adopted, and its end is known too
    adopted = await second.find(still)
    assert isinstance(adopted, ProcessHandle)
    assert adopted.pid == handles[still.id].pid  # type: ignore[union-attr]
    with trio.fail_after(5):
        assert await second.wait(adopted) == Exit(5, "exited with status 5")


async def test_an_attempt_runs_once_however_often_it_is_ordered(tmp_path: Path) -> None:
    """After a restart the order to run an attempt may come again (a reconcile, an order the
    manager delivered twice): it adopts the run, or reports how it ended; it never runs it
    again. The next attempt (a restart: RestartCount + 1) is a new run."""
    first = ProcessDriver(tmp_path, stop_grace=1)
    task = _task(["sh", "-c", "echo started; sleep 30"])
    running = await first.start(task)
    with trio.fail_after(5):  # sh has run its echo (a busy machine may take a while)
        while await _output(first, task.id) != "started\n":
            await trio.sleep(0.01)
    second = await _restarted(first)

    again = await second.start(task)
    assert isinstance(again, ProcessHandle) and isinstance(running, ProcessHandle)
    assert (again.pid, again.shim_pid) == (running.pid, running.shim_pid)
    ended: list[Exit] = []

    async def wait() -> None:
        ended.append(await second.wait(again))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await second.stop(again)
    assert ended == [Exit(143, "killed by SIGTERM")]

    third = await _restarted(second)
    assert await third.start(task) == Exit(143, "killed by SIGTERM")  # not run again
    assert await _output(third, task.id) == "started\n"

    restarted = msgspec.structs.replace(task, restart_count=1, cmd=["sh", "-c", "echo again"])
    handle = await third.start(restarted)
    assert isinstance(handle, ProcessHandle)
    assert await third.wait(handle) == Exit(0, "")
    assert await _output(third, task.id) == "started\nagain\n"
    assert await third.find(task) is None  # attempt 0's records are gone: attempt 1 ran

    # the same ID submitted anew once the manager forgot it (another CreatedAt) is a new task
    fourth = await _restarted(third)
    anew = msgspec.structs.replace(restarted, created_at="2026-01-02T00:00:00+00:00")
    handle = await fourth.start(anew)
    assert isinstance(handle, ProcessHandle)
    assert await fourth.wait(handle) == Exit(0, "")
    assert await _output(fourth, task.id) == "started\nagain\nagain\n"


async def test_an_intent_without_a_launch_is_started_once_and_never_late(tmp_path: Path) -> None:
    """The worker wrote the intent and died before the launcher forked the shim: the task
    never started, so the restarted worker starts it; and the request the dead worker had
    sent, carried out late by a launcher, starts nothing."""
    task = _task(["sh", "-c", "echo ran"])
    workdir = tmp_path / task.id
    workdir.mkdir()
    write_intent(workdir, LaunchIntent("dead-worker.1", 0, task))

    driver = ProcessDriver(tmp_path, stop_grace=1)
    assert await driver.find(task) is None
    marked = read_intent(workdir)
    assert marked is not None and marked[1] == [b"abandoned"]
    late = LaunchRequest("dead-worker.1", str(workdir), ["sh", "-c", "echo late"], {})
    assert await driver._launcher.send([late]) == {}
    reply = await driver._launcher.reply(late.launch)
    assert reply is not None and reply.resolve == "stale" and not reply.pid

    handle = await driver.start(task)
    assert isinstance(handle, ProcessHandle)
    assert await driver.wait(handle) == Exit(0, "")
    assert await _output(driver, task.id) == "ran\n"


async def test_a_start_that_cannot_be_told_is_failed_not_repeated(tmp_path: Path) -> None:
    """The intent is marked `spawning` (the shim was starting the process) but no shim holds
    the directory and none recorded a process: whether it started cannot be known, so the
    task ends Failed saying so, rather than perhaps running twice."""
    task = _task(["sh", "-c", "echo ran"])
    workdir = tmp_path / task.id
    workdir.mkdir()
    write_intent(workdir, LaunchIntent("dead-worker.1", 0, task))
    with open(workdir / "launch", "ab") as f:
        f.write(b"spawning\n")

    driver = ProcessDriver(tmp_path, stop_grace=1)
    assert await driver.find(task) == Exit(None, UNCERTAIN_START)
    assert await driver.start(task) == Exit(None, UNCERTAIN_START)
    assert await _output(driver, task.id) == ""


async def test_recovery_waits_for_a_shim_that_is_starting_its_process(tmp_path: Path) -> None:
    """A shim holds the directory's lock but has not recorded its process yet (the restarted
    worker looked in that instant): recovery waits for the record and adopts the process."""
    task = _task(["sleep", "30"])
    workdir = tmp_path / task.id
    workdir.mkdir()
    write_intent(workdir, LaunchIntent("dead-worker.1", 0, task))
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the shim holds it
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:

        async def record_later() -> None:
            await trio.sleep(0.3)
            ticks = start_ticks(process.pid) or 0
            record = RunRecord(task, process.pid, ticks, 0, "dead-worker.1", os.getpid())
            append_line(workdir, b'{"run":' + msgspec.json.encode(record) + b"}")

        driver = ProcessDriver(tmp_path, stop_grace=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(record_later)
            with trio.fail_after(5):
                found = await driver.find(task)
        assert isinstance(found, ProcessHandle) and found.pid == process.pid
        assert found.shim_pid == os.getpid()
    finally:
        os.close(fd)
        process.kill()
        process.wait()


async def test_a_killed_shim_leaves_its_process_watched_without_a_status(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path, stop_grace=1)
    task = _task(["sleep", "30"])
    handle = await driver.start(task)
    assert isinstance(handle, ProcessHandle)
    ended: list[Exit] = []

    async def wait() -> None:
        ended.append(await driver.wait(handle))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        os.kill(handle.shim_pid, signal.SIGKILL)
        await trio.sleep(0.3)
        assert not ended  # the process still runs: still watched
        # a restarted worker would adopt it, without its shim
        adopted = await (await _restarted(driver)).find(task)
        assert isinstance(adopted, ProcessHandle)
        assert (adopted.pid, adopted.shim_pid) == (handle.pid, 0)
        os.killpg(handle.pid, signal.SIGKILL)
    assert ended == [Exit(None, UNKNOWN_SHIM_GONE)]


async def test_a_task_gets_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH, HOME, its own Env, ORC_TASK_ID and ORC_TASK_NAME: nothing of orc's environment,
    where ORC_TOKEN lives. Its Env may set PATH and HOME; orc's variables are orc's."""
    monkeypatch.setenv("ORC_TOKEN", "s3cret")
    monkeypatch.setenv("SERVER_ONLY", "1")
    driver = ProcessDriver(tmp_path, stop_grace=1)
    plain = _task(["env"])
    own = msgspec.structs.replace(
        _task(["env"]), env=["GREETING=hi", "HOME=/tmp", "ORC_TASK_ID=mine", "X=a=b"]
    )
    for task in (plain, own):
        handle = await driver.start(task)
        assert isinstance(handle, ProcessHandle)
        assert await driver.wait(handle) == Exit(0, "")
    seen = {
        task.id: dict(line.split("=", 1) for line in (await _output(driver, task.id)).splitlines())
        for task in (plain, own)
    }
    assert seen[plain.id] == {
        "PATH": TASK_PATH,
        "HOME": str(tmp_path / plain.id),
        "ORC_TASK_ID": plain.id,
        "ORC_TASK_NAME": "t",
    }
    assert seen[own.id] == {
        "PATH": TASK_PATH,
        "HOME": "/tmp",
        "GREETING": "hi",
        "X": "a=b",
        "ORC_TASK_ID": own.id,
        "ORC_TASK_NAME": "t",
    }
    # nor does the launcher (nor so the shims it forks) carry orc's environment
    launcher = driver._launcher._process
    assert launcher is not None
    assert psutil.Process(launcher.pid).environ() == {"PATH": TASK_PATH}


async def test_records_of_a_shim_from_before_the_journal_are_read(tmp_path: Path) -> None:
    """A task started by an orc whose shims wrote `run.json` and `exit` files (renamed into
    place) is adopted and reported as before: after an upgrade, its files still tell."""
    task = _task(["sleep", "30"])
    workdir = tmp_path / task.id
    workdir.mkdir()
    write_intent(workdir, LaunchIntent("old-orc.1", 0, task))
    append_line(workdir, b"spawning")
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ticks = start_ticks(process.pid) or 0
        record = RunRecord(task, process.pid, ticks, 0, "old-orc.1")
        (workdir / "run.json").write_bytes(msgspec.json.encode(record))
        driver = ProcessDriver(tmp_path, stop_grace=1)
        found = await driver.find(task)
        assert isinstance(found, ProcessHandle) and found.pid == process.pid
    finally:
        process.kill()
        process.wait()
    ended = b'{"code":3,"error":"exited with status 3","launch":"old-orc.1"}'
    (workdir / "exit").write_bytes(ended)
    assert await ProcessDriver(tmp_path, stop_grace=1).find(task) == Exit(3, "exited with status 3")


async def test_a_request_a_shim_cannot_read_fails_alone_and_lets_go_of_its_directory(
    tmp_path: Path,
) -> None:
    """Requests that go to one shim together fail one by one: a directory whose journal is not
    orc's gets an error, and its lock is free again at once, though the shim lives on for the
    other request's process (a lock it kept would have recovery wait on a shim that does
    nothing for the task)."""
    driver = ProcessDriver(tmp_path, stop_grace=1)
    good, bad = _task(["sleep", "30"]), _task(["sleep", "30"])
    for task in (good, bad):
        (tmp_path / task.id).mkdir()
    write_intent(tmp_path / good.id, LaunchIntent("test.1", 0, good))
    (tmp_path / bad.id / "launch").write_bytes(b"this is no intent\n")
    requests = [
        LaunchRequest("test.1", str(tmp_path / good.id), ["sleep", "30"], {"PATH": TASK_PATH}),
        LaunchRequest("test.2", str(tmp_path / bad.id), ["sleep", "30"], {"PATH": TASK_PATH}),
    ]
    assert await driver._launcher.send(requests) == {}  # one message: one shim takes both
    started = await driver._launcher.reply("test.1")
    failed = await driver._launcher.reply("test.2")
    assert started is not None and started.pid and started.shim_pid
    assert failed is not None and "orc's shim" in failed.error and not failed.pid
    try:
        assert psutil.pid_exists(started.shim_pid)
        fd = os.open(tmp_path / bad.id, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no BlockingIOError
        finally:
            os.close(fd)
    finally:
        os.killpg(started.pid, signal.SIGKILL)
        await driver.aclose()


def test_a_record_cut_short_does_not_swallow_the_next(tmp_path: Path) -> None:
    """A full disk may cut a journal line short; the next record starts on a line of its own,
    so it is still read (and the garbled one is not)."""
    task = _task(["true"])
    write_intent(tmp_path, LaunchIntent("test.1", 0, task))
    with open(tmp_path / "launch", "ab") as f:
        f.write(b'{"run":{"task":{"ID":"x')  # a write the disk cut short
    record_exit(tmp_path, Exit(3, "exited with status 3"), "test.1", 0)
    ended = read_exit_record(tmp_path)
    assert ended is not None and (ended.exit, ended.launch) == (
        Exit(3, "exited with status 3"),
        "test.1",
    )
    found = read_intent(tmp_path)
    assert found is not None and found[1] == []  # no marks: the records are not marks
