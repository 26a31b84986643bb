"""Small trio actors: bounded mailboxes, tell/ask, one-for-one supervision.

Generic on purpose: nothing here knows about orc or the event log.
"""

from .actor import Actor
from .errors import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    AskTimeout,
    EscalationError,
    MailboxFull,
)
from .mailbox import Envelope, Mailbox
from .ref import ActorRef
from .supervisor import Supervisor

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorRef",
    "ActorStopped",
    "AskTimeout",
    "Envelope",
    "EscalationError",
    "Mailbox",
    "MailboxFull",
    "Supervisor",
]
