"""The process driver's spare working directories: a launch takes one when it can, and a
working directory behaves the same whichever way it was made. Its handles are typed."""

from __future__ import annotations

import uuid
from pathlib import Path

import psutil
import pytest
import trio

from orc.core.model import Task
from orc.drivers.base import Exit, Handle, LaunchError, journal_lines, read_exit_record
from orc.drivers.docker import DockerHandle
from orc.drivers.process import SPARES, ProcessDriver, ProcessHandle


def _task(cmd: list[str]) -> Task:
    return Task(id=str(uuid.uuid4()), name="t", cmd=cmd, driver="process")


async def _spares_ready(root: Path) -> list[Path]:
    with trio.fail_after(10):
        while True:
            spares = sorted((root / ".spare").glob("*"))
            if len(spares) >= SPARES:
                return spares
            await trio.sleep(0.01)


async def test_a_launch_takes_a_spare_and_another_is_made(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path, stop_grace=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_spares)
        before = await _spares_ready(tmp_path)
        task = _task(["sh", "-c", "echo out; echo err >&2; pwd"])
        handle = await driver.start(task)
        exit_ = await driver.wait(handle)
        assert exit_.code == 0
        workdir = tmp_path / task.id
        assert workdir.name not in {p.name for p in before}
        assert await driver.logs(task.id) == (f"out\n{workdir}\n".encode(), b"err\n")
        # one journal holds the intent and what became of it: no file per record
        assert sorted(p.name for p in workdir.iterdir()) == ["launch", "stderr", "stdout"]
        lines = journal_lines(workdir)
        assert lines is not None and [line[:8] for line in lines[1:] if line] == [
            b"spawning",
            b'{"run":{',
            b'{"exit":',
        ]
        ended = read_exit_record(workdir)
        assert ended is not None and ended.exit == Exit(0, "")
        after = await _spares_ready(tmp_path)
        assert len(set(before) - set(after)) == 1  # one taken, one made
        assert [t.id for t in await driver.saved_tasks()] == [task.id]  # .spare is no task
        nursery.cancel_scope.cancel()


async def test_a_second_run_appends_to_its_own_directory(tmp_path: Path) -> None:
    """A restarted task keeps its directory (and output); the spare stays a spare."""
    driver = ProcessDriver(tmp_path, stop_grace=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_spares)
        spares = await _spares_ready(tmp_path)
        task = _task(["sh", "-c", "echo run"])
        await driver.wait(await driver.start(task))
        spares = await _spares_ready(tmp_path)
        await driver.wait(await driver.start(task))
        assert await driver.logs(task.id) == (b"run\nrun\n", b"")
        # none was used (one more may have been made while the second launch held one)
        assert set(spares) <= set(await _spares_ready(tmp_path))
        nursery.cancel_scope.cancel()


async def test_without_spares_a_launch_makes_its_directory(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path, stop_grace=1)  # keep_spares never runs
    task = _task(["sh", "-c", "echo alone"])
    assert (await driver.wait(await driver.start(task))).code == 0
    assert await driver.logs(task.id) == (b"alone\n", b"")


async def test_spares_left_by_an_earlier_run_are_used(tmp_path: Path) -> None:
    first = ProcessDriver(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.keep_spares)
        spares = await _spares_ready(tmp_path)
        nursery.cancel_scope.cancel()
    (spares[0] / "stdout").unlink()  # a spare half made when orc stopped
    second = ProcessDriver(tmp_path, stop_grace=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(second.keep_spares)
        assert await _spares_ready(tmp_path) == spares
        for _ in spares:
            task = _task(["sh", "-c", "echo again"])
            assert (await second.wait(await second.start(task))).code == 0
            assert await second.logs(task.id) == (b"again\n", b"")
        nursery.cancel_scope.cancel()


async def test_a_command_that_does_not_exist_is_a_launch_error(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path, stop_grace=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_spares)
        await _spares_ready(tmp_path)
        with pytest.raises(LaunchError, match="cannot start '/nonexistent/cmd'"):
            await driver.start(_task(["/nonexistent/cmd"]))
        task = _task(["sh", "-c", "echo after"])
        assert (await driver.wait(await driver.start(task))).code == 0
        nursery.cancel_scope.cancel()


async def test_spares_the_disk_refuses_leave_launches_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`.spare` cannot be made (here a file has its name): one warning, launches make their
    own directories, and the next launch after the cause is gone brings the spares back."""
    (tmp_path / ".spare").write_text("in the way")
    driver = ProcessDriver(tmp_path, stop_grace=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_spares)
        for _ in range(3):
            task = _task(["sh", "-c", "echo own"])
            assert (await driver.wait(await driver.start(task))).code == 0
            assert await driver.logs(task.id) == (b"own\n", b"")
        warnings = [r for r in caplog.records if "cannot prepare" in r.getMessage()]
        assert len(warnings) == 1 and ".spare" in warnings[0].getMessage()
        (tmp_path / ".spare").unlink()
        await driver.wait(await driver.start(_task(["true"])))  # wakes keep_spares
        assert len(await _spares_ready(tmp_path)) == SPARES
        nursery.cancel_scope.cancel()


async def test_handles_are_typed_and_a_driver_refuses_another_drivers(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path, stop_grace=1)
    task = _task(["sleep", "30"])
    handle = await driver.start(task)
    assert isinstance(handle, ProcessHandle) and isinstance(handle, Handle)
    assert (handle.task_id, handle.container_id, handle.host_ports) == (task.id, "", None)
    assert not handle.stop_requested and not handle.exited.is_set()
    foreign = DockerHandle(task.id, "c0ffee", None)
    with pytest.raises(TypeError, match="expected a ProcessHandle, got <DockerHandle of task"):
        await driver.stop(foreign)
    ended: list[Exit] = []

    async def wait() -> None:
        ended.append(await driver.wait(handle))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await driver.stop(handle)
    assert handle.stop_requested and handle.exited.is_set()
    assert ended == [Exit(143, "killed by SIGTERM")]
    assert await driver.find(task) == ended[0]  # what a restarted worker would learn


# -- launch failures ---------------------------------------------------------------------------


def _not_executable(tmp_path: Path) -> str:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    return str(script)


FAILURES = [
    (lambda tmp: ["/nonexistent/cmd"], [], "cannot start '/nonexistent/cmd': No such file"),
    (lambda tmp: ["no-such-program-here"], [], "cannot start 'no-such-program-here': No such"),
    (lambda tmp: [_not_executable(tmp)], [], "Permission denied"),
    (lambda tmp: [str(tmp)], [], "Permission denied"),  # a directory
    (lambda tmp: ["echo", "a\0b"], [], "holds a NUL byte"),
    (lambda tmp: ["echo"], ["GREETING=a\0b"], "without NUL bytes"),
    (lambda tmp: ["echo"], ["NO_EQUALS_SIGN"], "is not NAME=value"),
    (lambda tmp: ["echo"], ["=value"], "is not NAME=value"),
    (lambda tmp: [], [], "Cmd is empty"),
    (lambda tmp: [""], [], "Cmd is empty"),
]


@pytest.mark.parametrize(("cmd", "env", "reason"), FAILURES)
async def test_every_launch_failure_is_a_launch_error_within_a_second(
    tmp_path: Path, cmd, env: list[str], reason: str
) -> None:
    """Whatever keeps a process from starting is a LaunchError with the reason, quickly: never
    a ValueError or IndexError (which took the worker down), never a hang. Nothing runs."""
    driver = ProcessDriver(tmp_path / "tasks", stop_grace=1)
    task = Task(id=str(uuid.uuid4()), name="t", cmd=cmd(tmp_path), env=env, driver="process")
    with trio.fail_after(1), pytest.raises(LaunchError) as raised:
        await driver.start(task)
    assert reason in str(raised.value), raised.value
    lines = journal_lines(tmp_path / "tasks" / task.id) or []
    assert not any(line.startswith(b'{"run":') for line in lines)
    # and the driver still launches
    assert (await driver.wait(await driver.start(_task(["true"])))).code == 0


async def test_stop_signals_the_process_group_and_kills_what_ignores_sigterm(
    tmp_path: Path,
) -> None:
    """A stop goes to the task's process group (its children too), not to its shim, which
    records how it ended: SIGKILL after the grace period for a task that ignores SIGTERM."""
    driver = ProcessDriver(tmp_path, stop_grace=0.5)
    task = _task(["sh", "-c", "trap '' TERM; sleep 30 & sleep 30; wait"])
    handle = await driver.start(task)
    assert isinstance(handle, ProcessHandle) and handle.shim_pid
    ended: list[Exit] = []

    async def wait() -> None:
        ended.append(await driver.wait(handle))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(0.2)
        children = psutil.Process(handle.pid).children()
        await driver.stop(handle)
    assert ended == [Exit(137, "killed by SIGKILL")]
    assert children
    # the SIGKILL went to the whole group at once, but a child dies when it next gets a CPU:
    # on a busy machine (two test workers on two cores) that is a moment after the shim saw sh go
    with trio.move_on_after(5):
        while any(c.is_running() and c.status() != "zombie" for c in children):
            await trio.sleep(0.01)
    assert not any(c.is_running() and c.status() != "zombie" for c in children), children
    assert not psutil.pid_exists(handle.shim_pid)


async def test_a_burst_of_launches_shares_shims_and_each_task_keeps_its_own_exit(
    tmp_path: Path,
) -> None:
    """Launches that come together go to the launcher together, and a shim takes the
    requests waiting for it (up to BATCH): fewer shims than tasks. Each task is still
    supervised on its own: every one gets its real exit code as it ends, the ones still
    running are unaffected, a failed start among them fails alone, and the shim ends with the
    last of its processes."""
    driver = ProcessDriver(tmp_path, stop_grace=1)
    quick = [_task(["sh", "-c", f"exit {i}"]) for i in range(20)]
    slow = [_task(["sleep", "30"]) for _ in range(20)]
    broken = _task(["/nonexistent/orc-test-binary"])
    handles: dict[str, Handle] = {}
    errors: dict[str, str] = {}

    async def start(task: Task) -> None:
        try:
            handles[task.id] = await driver.start(task)
        except LaunchError as exc:
            errors[task.id] = str(exc)

    async with trio.open_nursery() as nursery:
        for task in [*quick, broken, *slow]:
            nursery.start_soon(start, task)
    assert list(errors) == [broken.id] and "cannot start" in errors[broken.id]
    started = [h for h in handles.values() if isinstance(h, ProcessHandle)]
    assert len(started) == 40
    shims = {h.shim_pid for h in started}
    assert len(shims) < 40, "every launch had a shim of its own"
    for i, task in enumerate(quick):
        with trio.fail_after(10):
            assert await driver.wait(handles[task.id]) == Exit(
                i, f"exited with status {i}" if i else ""
            )
    for task in slow:  # their shims, which waited for the quick ones too, still watch them
        handle = handles[task.id]
        assert isinstance(handle, ProcessHandle)
        assert psutil.pid_exists(handle.pid) and psutil.pid_exists(handle.shim_pid)
    async with trio.open_nursery() as nursery:
        for task in slow:
            nursery.start_soon(driver.stop, handles[task.id])
            nursery.start_soon(driver.wait, handles[task.id])
    for task in slow:
        assert await driver.wait(handles[task.id]) == Exit(143, "killed by SIGTERM")
    with trio.fail_after(5):
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in shims):
            await trio.sleep(0.01)
    await driver.aclose()


async def test_a_relative_data_dir_launches_as_an_absolute_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` keeps its data in `./data`: a relative root. The launcher and its shims work
    in other directories, where that path would name another place; every launch failed."""
    monkeypatch.chdir(tmp_path)
    driver = ProcessDriver(Path("data") / "tasks", stop_grace=1)
    task = _task(["sh", "-c", "echo here; pwd"])
    handle = await driver.start(task)
    assert await driver.wait(handle) == Exit(0, "")
    workdir = tmp_path / "data" / "tasks" / task.id
    assert await driver.logs(task.id) == (f"here\n{workdir}\n".encode(), b"")
    await driver.aclose()
