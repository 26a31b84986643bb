"""One-for-one supervision with a restart intensity limit."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

from .actor import Actor
from .errors import EscalationError
from .mailbox import Mailbox
from .ref import ActorRef

M = TypeVar("M")

log = logging.getLogger("actors")


class _Child(Generic[M]):
    """One child: how to build its actor again, and the mailbox that outlives each build."""

    __slots__ = ("crashes", "factory", "mailbox", "name")

    def __init__(self, name: str, factory: Callable[[], Actor[M]], mailbox: Mailbox[M]) -> None:
        self.name = name
        self.factory = factory
        self.mailbox = mailbox
        self.crashes: deque[float] = deque()


class Supervisor:
    """Runs children as tasks and restarts each one on its own when it crashes.

    More than *max_restarts* crashes of one child within *within* seconds
    means restarting is not helping: the supervisor cancels every child,
    stops every mailbox and ``run()`` raises ``EscalationError``.
    """

    def __init__(self, name: str, *, max_restarts: int = 3, within: float = 5.0) -> None:
        self.name = name
        self.max_restarts = max_restarts
        self.within = within
        self._children: dict[str, _Child[Any]] = {}  # each child takes its own messages
        self._nursery: trio.Nursery | None = None
        self._state = "new"  # -> "running" -> "stopped"
        self._escalation: EscalationError | None = None

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self._state} children={list(self._children)}>"

    def add(
        self, name: str, factory: Callable[[], Actor[M]], *, mailbox_size: int = 1024
    ) -> ActorRef[M]:
        """Register a child; it starts now if the supervisor is running."""
        if name in self._children:
            raise ValueError(f"supervisor {self.name!r} already has a child {name!r}")
        mailbox: Mailbox[M] = Mailbox(name, mailbox_size)
        child = _Child(name, factory, mailbox)
        self._children[name] = child
        if self._state == "stopped":
            mailbox.stop()
        elif self._nursery is not None:
            self._nursery.start_soon(self._supervise, child, name=f"actor:{name}")
        return ActorRef(mailbox)

    async def run(self) -> None:
        """Run all children until cancelled or until a child escalates."""
        if self._state != "new":
            raise RuntimeError(f"supervisor {self.name!r} can only run once")
        self._state = "running"
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for child in list(self._children.values()):
                    nursery.start_soon(self._supervise, child, name=f"actor:{child.name}")
                # Children may be added later and may all return: stay up
                # until cancelled either way.
                await trio.sleep_forever()
        except BaseExceptionGroup as group:
            # Children only let Cancelled and other BaseExceptions out. Hand a
            # plain Cancelled to the caller rather than a group of them.
            cancelled, rest = group.split(trio.Cancelled)
            if rest is None and cancelled is not None:
                raise _first_leaf(cancelled) from None
            raise
        finally:
            self._nursery = None
            self._state = "stopped"
            # Only now: a child still running must not see its mailbox close
            # under it and mistake that for a crash.
            for child in self._children.values():
                child.mailbox.stop()
        if self._escalation is not None:
            raise self._escalation

    async def _supervise(self, child: _Child[M]) -> None:
        while True:
            child.mailbox.current = None
            try:
                actor = child.factory()
                await actor.run(child.mailbox)
            except Exception as exc:
                if self._stopping():
                    # Failing while being cancelled is part of shutdown, not
                    # a reason to restart.
                    log.warning("actor %r failed during shutdown", child.name, exc_info=exc)
                    return
                if not self._crashed(child, exc):
                    return
            else:
                log.info("actor %r returned; not restarting it", child.name)
                child.mailbox.stop()
                return

    def _stopping(self) -> bool:
        return self._nursery is None or self._nursery.cancel_scope.cancel_called

    def _crashed(self, child: _Child[M], exc: Exception) -> bool:
        """Record a crash; return whether to restart."""
        current = child.mailbox.current
        log.error(
            "actor %r (supervisor %r) crashed while handling %s",
            child.name,
            self.name,
            repr(current) if current is not None else "no message",
            exc_info=exc,
        )
        child.mailbox.fail_delivered(exc)

        now = trio.current_time()
        child.crashes.append(now)
        while child.crashes and child.crashes[0] <= now - self.within:
            child.crashes.popleft()
        if len(child.crashes) <= self.max_restarts:
            return True

        error = EscalationError(
            f"supervisor {self.name!r} gave up: child {child.name!r} crashed "
            f"{len(child.crashes)} times within {self.within:g}s; last error: {exc!r}",
            child=child.name,
            error=exc,
        )
        error.__cause__ = exc
        if self._escalation is None:
            self._escalation = error
        log.error("%s", error)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return False


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
