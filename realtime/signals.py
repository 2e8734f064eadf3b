"""Signals about sockets, for the project's own code (INTEGRATION.md section 8).

- `socket_connected(sender, user, session, scope)`: after `welcome`.
- `channel_subscribed(sender, user, session, channel)`: after `subscribed` (a resume's restored
  subscriptions too).
- `channel_unsubscribed(sender, user, session, channel)`: after the subscription ended: the
  client's `unsubscribe`, the server's end of it (`unsubscribed` with a reason), and each
  channel the socket still held when it closed.
- `socket_disconnected(sender, user, session, code, reason)`: after the socket ended, only for a
  socket that was connected (a socket that never authenticated sends nothing).

`sender` is the consumer class and `session` the session id (as in `welcome`). Each is sent
once, by the process serving the socket, with `Signal.asend_robust`: sync receivers (run in
a thread, the ORM allowed) and async ones both work, and one that raises is logged on the
`realtime.signals` logger without harming the socket or the other receivers. The socket
never waits for receivers: a signal with listeners is sent from a task, one ordered chain
per socket (connected < subscribed < unsubscribed < disconnected); a signal without any
costs one `has_listeners()` check. Connect receivers at start-up (an `AppConfig.ready`).

And one about credentials: `credentials_revoked(sender, user, reason)`, sent after the
transaction that revoked a user's credentials commits (logout, deactivation, a password
change, deletion); the app itself listens and closes every socket of that user (4503) on
every server process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

socket_connected = Signal()
socket_disconnected = Signal()
channel_subscribed = Signal()
channel_unsubscribed = Signal()

#: Sent after the transaction that revoked a user's credentials commits.
#:
#: Arguments: ``sender`` is the user model (``get_user_model()``); ``user`` is the
#: user (for ``"deleted"``, a copy taken before the row went, so ``user.pk`` is
#: still set); ``reason`` is one of `REASONS`. Access tokens issued before the
#: revocation are rejected from then on (`realtime.models.CredentialState`).
credentials_revoked = Signal()

#: Every `reason` `credentials_revoked` is sent with.
REASONS = frozenset({"logout", "deactivated", "password_changed", "deleted"})

_pending: set[asyncio.Task] = set()  # strong references until each is sent


class SocketSignals:
    """One socket's chain of signals: each sent after the one before, none awaited by the socket."""

    __slots__ = ("sender", "tail")

    def __init__(self, sender: type) -> None:
        self.sender = sender
        self.tail: asyncio.Task | None = None

    def send(self, signal: Signal, **kwargs: Any) -> None:
        """Queue `signal` after this socket's earlier ones; nothing at all when it has no receivers."""
        if not signal.has_listeners(self.sender):
            return
        task = asyncio.get_running_loop().create_task(_send(self.tail, signal, self.sender, kwargs))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        self.tail = task


async def _send(before: asyncio.Task | None, signal: Signal, sender: type, kwargs: dict[str, Any]) -> None:
    if before is not None:
        await asyncio.wait([before])  # (never raises: a failure there was logged by that task)
    try:
        responses = await signal.asend_robust(sender, **kwargs)
    except Exception:  # asend_robust catches receivers' errors; anything else is ours
        logger.exception("could not send %r for session %s", signal, kwargs.get("session"))
        return
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "signal receiver %r raised for %s (session %s)",
                receiver, _name(signal), kwargs.get("session"), exc_info=response,
            )  # fmt: skip


def _name(signal: Signal) -> str:
    for name in ("socket_connected", "socket_disconnected", "channel_subscribed", "channel_unsubscribed"):
        if globals()[name] is signal:
            return name
    return repr(signal)


async def flush() -> None:
    """Await every signal queued so far, on every socket (for tests: nothing to sleep for)."""
    while _pending:
        await asyncio.wait(list(_pending))
