"""Exceptions raised to code that talks to actors."""

from __future__ import annotations


class ActorError(Exception):
    """Base class, so callers can catch every actor failure in one clause."""


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived in time.

    A ``TimeoutError`` so generic timeout handling catches it; the actor is
    untouched and may still process the message later.
    """


class ActorCrashed(ActorError):
    """The actor raised while handling the asked message.

    ``__cause__`` is the original exception.
    """


class MailboxFull(ActorError):
    """``tell_nowait`` found no room; use ``tell`` to wait for it instead."""


class ActorStopped(ActorError):
    """The actor's mailbox is closed: the actor returned or its tree shut down."""


class EscalationError(ActorError):
    """A child crashed too often; its supervisor gave up and stopped the tree.

    ``child`` names the child and ``__cause__``/``error`` is its last crash.
    """

    def __init__(self, message: str, *, child: str, error: BaseException) -> None:
        super().__init__(message)
        self.child = child
        self.error = error
