"""The process driver's spare working directories: a launch takes one when it can, and a
working directory behaves the same whichever way it was made. Its handles are typed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from orc.core.model import Task
from orc.drivers.base import Exit, Handle, LaunchError
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
        assert (workdir / "exit").exists()
        assert sorted(p.name for p in workdir.iterdir()) == ["exit", "run.json", "stderr", "stdout"]
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
    assert await driver.find(task.id) == ended[0]  # what a restarted worker would learn
