"""Bounded mailboxes and the envelopes they carry."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

from .errors import ActorCrashed, ActorStopped, AskTimeout, MailboxFull

M = TypeVar("M")

_UNSET = object()


class Envelope(Generic[M]):
    """One message plus, for an ask, the one-shot slot its reply goes to.

    The first ``reply``/``fail`` wins and later ones are no-ops, so an actor
    can always answer without knowing whether the asker timed out or the
    supervisor already failed the ask.
    """

    __slots__ = ("_done", "_error", "_value", "delivered", "is_ask", "message", "target")

    def __init__(self, message: M, *, target: str, is_ask: bool = False) -> None:
        self.message = message
        self.target = target
        self.is_ask = is_ask
        # Set once the actor has taken this envelope out of the queue: a crash
        # of that actor instance can then never answer it.
        self.delivered = False
        self._done = trio.Event() if is_ask else None
        self._value: object = _UNSET
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        kind = "ask" if self.is_ask else "tell"
        return f"<Envelope {kind} to {self.target!r}: {self.message!r}>"

    @property
    def settled(self) -> bool:
        return self._done is None or self._done.is_set()

    def reply(self, value: object) -> None:
        if self._done is None or self._done.is_set():
            return
        self._value = value
        self._done.set()

    def fail(self, exc: BaseException) -> None:
        """Make the asker raise ``ActorCrashed`` chained from *exc*."""
        crashed = ActorCrashed(
            f"actor {self.target!r} crashed handling {type(self.message).__name__}: {exc!r}"
        )
        crashed.__cause__ = exc
        self._settle_error(crashed)

    def _settle_error(self, exc: BaseException) -> None:
        if self._done is None or self._done.is_set():
            return
        self._error = exc
        self._done.set()

    def _abandon(self) -> None:
        # The asker left (timeout or cancel): any later reply is a no-op.
        if self._done is not None:
            self._done.set()

    async def _wait(self) -> object:
        assert self._done is not None
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Mailbox(Generic[M]):
    """A bounded FIFO queue that outlives any one instance of its actor.

    The supervisor owns it, so messages queued behind a crashing one are kept
    for the restarted instance. ``stop()`` is final: queued and future
    messages are refused with ``ActorStopped``.
    """

    def __init__(self, name: str, size: int = 1024) -> None:
        if size < 1:
            # A zero-size channel would make every tell a rendezvous with the
            # actor, which defeats tell_nowait.
            raise ValueError("mailbox size must be at least 1")
        self.name = name
        self.size = size
        #: The envelope the actor is working on, named in crash reports.
        #: ``receive()`` sets it; actors that drain batches should assign it
        #: as they handle each envelope.
        self.current: Envelope[M] | None = None
        self._send, self._receive = trio.open_memory_channel[Envelope[M]](size)
        self._asks: set[Envelope[M]] = set()
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"{self.queued}/{self.size}"
        return f"<Mailbox {self.name!r} {state}>"

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def queued(self) -> int:
        return self._receive.statistics().current_buffer_used

    # -- actor side --------------------------------------------------------

    async def receive(self) -> Envelope[M]:
        try:
            env = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ActorStopped(f"mailbox of {self.name!r} is stopped") from None
        env.delivered = True
        self.current = env
        return env

    def receive_nowait_many(self, max_n: int) -> list[Envelope[M]]:
        """Take up to *max_n* envelopes that are already waiting, without blocking."""
        batch: list[Envelope[M]] = []
        while len(batch) < max_n:
            try:
                env = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            env.delivered = True
            batch.append(env)
        return batch

    # -- sender side -------------------------------------------------------

    def _envelope(self, message: M, is_ask: bool) -> Envelope[M]:
        if self._stopped:
            raise ActorStopped(f"actor {self.name!r} is stopped")
        return Envelope(message, target=self.name, is_ask=is_ask)

    async def put(self, message: M) -> None:
        await self._put(self._envelope(message, is_ask=False))

    def put_nowait(self, message: M) -> None:
        env = self._envelope(message, is_ask=False)
        try:
            self._send.send_nowait(env)
        except trio.WouldBlock:
            raise MailboxFull(f"mailbox of {self.name!r} is full ({self.size} messages)") from None
        except trio.ClosedResourceError:
            raise ActorStopped(f"actor {self.name!r} is stopped") from None

    async def ask(self, message: M, timeout: float = 5.0) -> object:
        env = self._envelope(message, is_ask=True)
        self._asks.add(env)
        try:
            # The timeout covers waiting for room too: a full mailbox is the
            # same symptom to the caller as a slow actor.
            with trio.move_on_after(timeout):
                await self._put(env)
                return await env._wait()
            raise AskTimeout(
                f"ask to {self.name!r} with {type(message).__name__} "
                f"got no reply within {timeout:g}s"
            )
        finally:
            self._asks.discard(env)
            env._abandon()

    async def _put(self, env: Envelope[M]) -> None:
        try:
            await self._send.send(env)
        except trio.ClosedResourceError:
            raise ActorStopped(f"actor {self.name!r} is stopped") from None

    # -- supervisor side ---------------------------------------------------

    def fail_delivered(self, exc: BaseException) -> None:
        """Fail every ask the dead actor instance took but never answered.

        Queued asks are left alone: the next instance will get to them.
        """
        for env in list(self._asks):
            if env.delivered:
                env.fail(exc)
        self.current = None

    def stop(self) -> None:
        """Refuse all queued, blocked and future messages with ``ActorStopped``."""
        if self._stopped:
            return
        self._stopped = True
        # Wakes senders blocked on a full mailbox with ClosedResourceError.
        self._send.close()
        while True:
            try:
                env = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            env._settle_error(ActorStopped(f"actor {self.name!r} stopped"))
        self._receive.close()
        for env in list(self._asks):
            env._settle_error(ActorStopped(f"actor {self.name!r} stopped"))
        self._asks.clear()
        self.current = None
