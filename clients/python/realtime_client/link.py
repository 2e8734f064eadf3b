"""What the session core knows of one connection, and how an attempt ended; plain data, no I/O.

A `Link` lives from the socket's opening to its end: the requests in flight by id (a reply
is matched within its own connection only), the liveness deadline, the positions sent for
a resume, the server's `disconnect` frame, the token's expiry and whether a refresh runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .backoff import ABNORMAL, close_name

REQUEST, AUTH = "request", "auth"  # kinds of `Pending`, besides channels.SUBSCRIBE and UNSUBSCRIBE


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one connection attempt ended: the close code and reason, and whether that stops the client."""

    code: int | None
    reason: str
    stop: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    """A request in flight: its kind (a `REQUEST` is someone's: its reply is settled) and its channel."""

    kind: str
    channel: str | None = None


@dataclass(slots=True)
class Link:
    """The open connection as the core sees it; a new one per socket."""

    generation: int
    url: str
    last_frame: float  # when the last frame came (the driver's clock)
    liveness: float | None  # seconds without a frame before the connection counts as dead
    welcomed: bool = False
    pending: dict[int | str, Pending] = field(default_factory=dict)
    positions_sent: set[str] = field(default_factory=set)
    disconnect_frame: dict[str, Any] | None = None
    expires_at: float | None = None
    refreshing: bool = False

    @property
    def deadline(self) -> float | None:
        """When the connection counts as dead without a further frame (None: never)."""
        return self.last_frame + self.liveness if self.liveness else None

    def silent(self, now: float) -> Outcome | None:
        """How the connection ends when its deadline has passed at `now`: no welcome, or no heartbeat."""
        deadline = self.deadline
        if deadline is None or deadline - now > 0:
            return None
        return Outcome(4004, "heartbeat_timeout") if self.welcomed else Outcome(None, "welcome_timeout")

    def ended(self, code: int | None, reason: str) -> Outcome:
        """The close frame's code and reason; without one, the `disconnect` frame's, else 1006."""
        if code is None:
            if self.disconnect_frame is not None:
                code, reason = self.disconnect_frame.get("code"), self.disconnect_frame.get("reason", "")
            else:
                code, reason = ABNORMAL, ""
        return Outcome(code, reason or close_name(code))

    def settle_all(self) -> list[int | str]:
        """Forget every request in flight; returns the ids of the `REQUEST`s, whose waiters fail."""
        pending, self.pending = self.pending, {}
        return [rid for rid, request in pending.items() if request.kind == REQUEST]
