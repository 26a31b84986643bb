"""Tests for the generic actor runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStopped,
    AskTimeout,
    Envelope,
    EscalationError,
    Mailbox,
    MailboxFull,
    Supervisor,
)


class Boom(Exception):
    pass


class Recorder(Actor[object]):
    """Records every message; "boom" crashes it, ("sleep", s) stalls it."""

    instances: int = 0

    def __init__(self, log: list[object] | None = None) -> None:
        type(self).instances += 1
        self.seen: list[object] = []
        self.log = log if log is not None else []
        self.starts = 0

    async def started(self) -> None:
        self.starts += 1
        self.log.append("started")

    async def handle(self, message: object) -> object:
        if message == "boom":
            raise Boom("kaboom")
        if isinstance(message, tuple) and message[0] == "sleep":
            await trio.sleep(message[1])
        if message == "state":
            return list(self.seen)
        self.seen.append(message)
        self.log.append(message)
        return ("ok", message)


@asynccontextmanager
async def running(sup: Supervisor) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        yield nursery
        nursery.cancel_scope.cancel()


def one(factory: Callable[[], Actor[object]], **kw: object) -> tuple[Supervisor, ActorRef[object]]:
    sup = Supervisor("test", **kw)  # type: ignore[arg-type]
    return sup, sup.add("a", factory)


async def test_tell_and_ask_roundtrip() -> None:
    log: list[object] = []
    sup, ref = one(lambda: Recorder(log))
    async with running(sup):
        await ref.tell(1)
        ref.tell_nowait(2)
        assert await ref.ask(3) == ("ok", 3)
        assert await ref.ask("state") == [1, 2, 3]
    assert ref.name == "a"


async def test_messages_are_handled_in_order() -> None:
    sup, ref = one(Recorder)
    async with running(sup):
        for i in range(100):
            await ref.tell(i)
        assert await ref.ask("state") == list(range(100))


async def test_bounded_mailbox_applies_backpressure(autojump_clock: trio.abc.Clock) -> None:
    gate = trio.Event()

    class Gated(Recorder):
        async def handle(self, message: object) -> object:
            await gate.wait()
            return await super().handle(message)

    sup = Supervisor("test")
    ref = sup.add("a", Gated, mailbox_size=2)
    async with running(sup):
        await ref.tell(0)
        await trio.testing.wait_all_tasks_blocked()  # actor holds 0, waits at the gate
        ref.tell_nowait(1)
        ref.tell_nowait(2)
        with pytest.raises(MailboxFull, match="'a'"):
            ref.tell_nowait(3)

        sent = trio.Event()

        async def blocked_tell() -> None:
            await ref.tell(3)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_tell)
            await trio.sleep(1)
            assert not sent.is_set()
            gate.set()
        assert sent.is_set()
        assert await ref.ask("state") == [0, 1, 2, 3]


async def test_ask_timeout_names_actor_and_actor_keeps_working(
    autojump_clock: trio.abc.Clock,
) -> None:
    sup, ref = one(Recorder)
    async with running(sup):
        with pytest.raises(AskTimeout) as info:
            await ref.ask(("sleep", 10), timeout=1)
        assert isinstance(info.value, TimeoutError)
        msg = str(info.value)
        assert "'a'" in msg and "tuple" in msg and "1s" in msg
        # The late reply to the abandoned ask must be harmless.
        assert await ref.ask("x", timeout=60) == ("ok", "x")
        assert await ref.ask("state") == [("sleep", 10), "x"]


async def test_crash_restarts_with_fresh_state_and_keeps_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[object] = []
    sup, ref = one(lambda: Recorder(log))
    caplog.set_level(logging.ERROR, logger="actors")
    async with running(sup):
        await ref.tell("before")
        await trio.testing.wait_all_tasks_blocked()
        gate = trio.Event()

        async def ask_boom() -> None:
            with pytest.raises(ActorCrashed) as info:
                await ref.ask("boom")
            assert isinstance(info.value.__cause__, Boom)
            assert "'a'" in str(info.value)
            gate.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_boom)
            await trio.testing.wait_all_tasks_blocked()
        # "after" was queued behind "boom" and survives the restart.
        await ref.tell("after")
        assert gate.is_set()
        assert await ref.ask("state") == ["after"]  # fresh instance, fresh state
    assert log == ["started", "before", "started", "after"]

    [record] = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "'a'" in record.getMessage() and "'boom'" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is Boom


async def test_messages_queued_behind_a_crash_are_kept() -> None:
    log: list[object] = []
    sup, ref = one(lambda: Recorder(log))
    for message in ["boom", 1, 2]:  # queued before the actor starts
        ref.tell_nowait(message)
    async with running(sup):
        assert await ref.ask("state") == [1, 2]
    assert log == ["started", "started", 1, 2]


async def test_started_runs_on_each_restart() -> None:
    Recorder.instances = 0
    log: list[object] = []
    sup, ref = one(lambda: Recorder(log), max_restarts=5)
    async with running(sup):
        for _ in range(3):
            with pytest.raises(ActorCrashed):
                await ref.ask("boom")
        await ref.ask("ping")
    assert log.count("started") == 4
    assert Recorder.instances == 4


async def test_restart_intensity_escalates(autojump_clock: trio.abc.Clock) -> None:
    cleaned: list[str] = []

    class Bystander(Recorder):
        async def handle(self, message: object) -> object:
            try:
                return await super().handle(message)
            finally:
                cleaned.append("bystander")

    sup = Supervisor("root", max_restarts=2, within=5)
    ref = sup.add("flaky", Recorder)
    other = sup.add("other", Bystander)
    errors: list[BaseException] = []

    async def run_sup() -> None:
        try:
            await sup.run()
        except BaseException as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_sup)
        stuck = trio.Event()

        async def ask_stuck() -> None:
            with pytest.raises(ActorStopped):
                await other.ask(("sleep", 1000), timeout=2000)
            stuck.set()

        nursery.start_soon(ask_stuck)
        for _ in range(3):
            ref.tell_nowait("boom")
        ref.tell_nowait("never")

    [error] = errors
    assert type(error) is EscalationError  # plain, not a group
    assert error.child == "flaky"
    assert isinstance(error.error, Boom) and error.__cause__ is error.error
    assert "'flaky'" in str(error) and "Boom" in str(error)
    assert stuck.is_set()
    assert cleaned == ["bystander"]  # the other child was cancelled
    for r in (ref, other):
        assert r.stopped
        with pytest.raises(ActorStopped):
            await r.ask("x")
        with pytest.raises(ActorStopped):
            await r.tell("x")
        with pytest.raises(ActorStopped):
            r.tell_nowait("x")


async def test_crashes_spread_over_time_do_not_escalate(
    autojump_clock: trio.abc.Clock,
) -> None:
    sup, ref = one(Recorder, max_restarts=2, within=5)
    async with running(sup):
        for _ in range(10):
            with pytest.raises(ActorCrashed):
                await ref.ask("boom")
            await trio.sleep(3)  # two crashes per 5s window at most
        assert await ref.ask("ok") == ("ok", "ok")


async def test_factory_failure_counts_as_crash(autojump_clock: trio.abc.Clock) -> None:
    def factory() -> Actor[object]:
        raise Boom("cannot build")

    sup, _ref = one(factory, max_restarts=1)
    with pytest.raises(EscalationError, match="cannot build"):
        await sup.run()


async def test_cancel_shuts_down_cleanly() -> None:
    cleaned: list[str] = []

    class Cleanup(Recorder):
        async def run(self, mailbox: Mailbox[object]) -> None:
            try:
                await super().run(mailbox)
            finally:
                cleaned.append("done")

    sup = Supervisor("root")
    refs = [sup.add(f"c{i}", Cleanup) for i in range(3)]
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            assert await refs[0].ask(1) == ("ok", 1)
            scope.cancel()
    assert scope.cancelled_caught
    assert cleaned == ["done"] * 3
    for ref in refs:
        with pytest.raises(ActorStopped):
            await ref.ask("x")


async def test_cancelled_run_raises_plain_cancelled() -> None:
    sup, _ = one(Recorder)
    sup.add("b", Recorder)
    seen: list[BaseException] = []

    async def run() -> None:
        try:
            await sup.run()
        except BaseException as exc:
            seen.append(exc)
            raise

    with trio.move_on_after(0.01):
        await run()
    assert [type(e) for e in seen] == [trio.Cancelled]


async def test_actor_that_returns_is_stopped() -> None:
    class Once(Actor[object]):
        async def run(self, mailbox: Mailbox[object]) -> None:
            env = await mailbox.receive()
            env.reply("bye")

    sup, ref = one(Once)
    async with running(sup):
        assert await ref.ask("hi") == "bye"
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ActorStopped):
            await ref.ask("again")


async def test_add_while_running() -> None:
    sup = Supervisor("root")
    async with running(sup):
        await trio.testing.wait_all_tasks_blocked()
        ref = sup.add("late", Recorder)
        assert await ref.ask(1) == ("ok", 1)
        with pytest.raises(ValueError, match="late"):
            sup.add("late", Recorder)


async def test_receive_nowait_many_drains_up_to_n() -> None:
    batches: list[list[object]] = []

    class Batcher(Actor[object]):
        async def run(self, mailbox: Mailbox[object]) -> None:
            while True:
                first = await mailbox.receive()
                envs = [first, *mailbox.receive_nowait_many(2)]
                batches.append([e.message for e in envs])
                for env in envs:
                    env.reply(len(envs))

    sup = Supervisor("root")
    ref = sup.add("b", Batcher)
    for i in range(5):
        ref.tell_nowait(i)
    async with running(sup):
        await trio.testing.wait_all_tasks_blocked()
        assert await ref.ask(5) == 1
    assert batches == [[0, 1, 2], [3, 4], [5]]


async def test_mailbox_primitives() -> None:
    box: Mailbox[int] = Mailbox("m", size=3)
    assert box.receive_nowait_many(10) == []
    for i in range(3):
        box.put_nowait(i)
    envs = box.receive_nowait_many(2)
    assert [e.message for e in envs] == [0, 1]
    assert all(isinstance(e, Envelope) and not e.is_ask for e in envs)
    envs[0].reply("ignored")  # no-op for a tell
    env = await box.receive()
    assert env.message == 2 and box.current is env
    assert "tell" in repr(env) and "'m'" in repr(env)
    box.stop()
    with pytest.raises(ActorStopped):
        await box.receive()
    assert box.receive_nowait_many(5) == []
    with pytest.raises(ValueError):
        Mailbox("bad", size=0)


async def test_only_first_reply_counts() -> None:
    box: Mailbox[str] = Mailbox("m")
    result: list[object] = []

    async def asker() -> None:
        result.append(await box.ask("q"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        env = await box.receive()
        assert env.is_ask
        env.reply(1)
        env.reply(2)
        env.fail(Boom())
    assert result == [1]


async def test_stop_fails_queued_and_blocked_senders() -> None:
    box: Mailbox[str] = Mailbox("m", size=1)
    outcomes: list[type[BaseException]] = []

    async def ask() -> None:
        try:
            await box.ask("q")
        except ActorStopped as exc:
            outcomes.append(type(exc))

    async def tell() -> None:
        try:
            await box.put("t")
        except ActorStopped as exc:
            outcomes.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)  # fills the mailbox
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(tell)  # blocks on the full mailbox
        await trio.testing.wait_all_tasks_blocked()
        box.stop()
    assert outcomes == [ActorStopped, ActorStopped]
