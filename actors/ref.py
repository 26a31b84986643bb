"""ActorRef: the handle that the rest of the program holds."""

from __future__ import annotations

from typing import Generic, TypeVar

from .mailbox import Mailbox

M = TypeVar("M")


class ActorRef(Generic[M]):
    """Sends to one actor's mailbox; valid across restarts of the actor."""

    __slots__ = ("_mailbox", "name")

    def __init__(self, mailbox: Mailbox[M]) -> None:
        self._mailbox = mailbox
        self.name = mailbox.name

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r}>"

    @property
    def stopped(self) -> bool:
        return self._mailbox.stopped

    async def tell(self, message: M) -> None:
        """Enqueue *message*, waiting for room if the mailbox is full."""
        await self._mailbox.put(message)

    def tell_nowait(self, message: M) -> None:
        """Enqueue *message* or raise ``MailboxFull`` at once."""
        self._mailbox.put_nowait(message)

    async def ask(self, message: M, timeout: float = 5.0) -> object:
        """Send *message* and wait for the actor's reply.

        Raises ``AskTimeout``, ``ActorCrashed`` or ``ActorStopped``.
        """
        return await self._mailbox.ask(message, timeout)
