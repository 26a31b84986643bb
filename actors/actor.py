"""The Actor base class."""

from __future__ import annotations

from typing import Generic, TypeVar

from .mailbox import Mailbox

M = TypeVar("M")


class Actor(Generic[M]):
    """Subclass and override ``handle``; one instance owns its state.

    The supervisor builds a fresh instance from its factory on every
    (re)start, so state never survives a crash; the mailbox does.
    """

    async def started(self) -> None:
        """Run before the first message of each (re)start."""

    async def handle(self, message: M) -> object:
        """Process one message; the return value answers an ask."""
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")

    async def run(self, mailbox: Mailbox[M]) -> None:
        """Receive and handle messages one at a time, forever.

        Override to drain batches with ``mailbox.receive_nowait_many``; set
        ``mailbox.current`` to the envelope in hand so a crash names it.
        """
        await self.started()
        while True:
            env = await mailbox.receive()
            try:
                result = await self.handle(env.message)
            except Exception as exc:
                env.fail(exc)
                raise
            env.reply(result)
