"""What the request handlers and the subscriptions see of a socket, below the consumer.

`realtime.socket.handlers` and `realtime.socket.subscriptions` are given the socket they serve and use a
few of its members; `Socket` lists exactly those, so that neither needs the consumer
(`realtime.socket.consumer.RealtimeConsumer`, which satisfies it structurally: a `Protocol`
costs nothing at run time). `SocketState` is where a socket is in its life.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from realtime.core.protocol import Position
    from realtime.sessions.records import SessionRecord
    from realtime.sessions.rows import SessionRow


class SocketState(enum.Enum):
    """Where a socket is in its life; one value instead of a flag per phase (as websockets' `State`)."""

    CONNECTING = "connecting"  # the handshake arrived; not accepted yet
    OPEN = "open"  # accepted, not authenticated (only `auth`, `ping`, `pong` are served)
    AUTHENTICATING = "authenticating"  # credentials arrived and are being checked: AUTH_TIMEOUT no longer applies
    AUTHENTICATED = "authenticated"  # `welcome` sent
    CLOSING = "closing"  # a close is under way (the server's or the client's): nothing more is handled
    CLOSED = "closed"  # the socket is gone and its session recorded


class Socket(Protocol):
    """One socket as its handlers and subscriptions use it (the consumer is one).

    Its subscriptions (`subscriptions`, used by the handlers) are added by
    `realtime.socket.handlers.HandlerSocket`: they take this socket themselves.
    """

    user: Any  # the authenticated user; None until then
    session_id: str
    settings: dict[str, Any]  # the REALTIME settings
    record: SessionRecord | None  # the session's record for resume, once authenticated
    row: SessionRow | None  # the session row, once authenticated
    clock: Callable[[], float]  # the event loop's clock
    ping_sent_at: float | None  # when the heartbeat `ping` was queued, until its `pong`

    @property
    def closing(self) -> bool:
        """True once a close is under way: no frame or event is handled any more."""
        ...

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue one frame for the client."""
        ...

    def send_text(self, text: str, size: int | None = None) -> None:
        """Queue an already serialised frame (of `size` UTF-8 bytes, when known)."""
        ...

    def set_expiry(self, expires_at: int | None, checked_us: int) -> None:
        """Schedule `expiring` and the 4009 close for a token that ends at `expires_at`, checked at `checked_us`."""
        ...

    async def start_session(
        self,
        request_id,
        user,
        method: str,
        expires_at: int | None,
        resume: str | None = None,
        positions: dict[str, Position] | None = None,
        checked_us: int = 0,
    ) -> None:
        """Mark the socket authenticated (resuming `resume` when it can) and send `welcome`."""
        ...

    def credentials_arrived(self) -> None:
        """An `auth` frame came: from now on its check's outcome decides, not AUTH_TIMEOUT."""
        ...

    def credentials_withdrawn(self) -> None:
        """The check could not be made (`unavailable`): unauthenticated again, with a fresh AUTH_TIMEOUT."""
        ...
