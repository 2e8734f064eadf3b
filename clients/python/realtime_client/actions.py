"""What the session core asks of its driver: plain data, one frozen dataclass per kind.

`Session` (session.py) returns a list of these from every event it is fed; the driver
(loop.py) carries them out in order. Socket-side: `Send`, `Close`, `ArmTimer`, `Refresh`,
`Settle`, `Report`. Application-side (handed to `Client`): `Emit`, `Deliver`, `Finish`.
What to do after a connection attempt: `Reconnect`, `Stop` or `AskToken`, always last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import Publication


@dataclass(frozen=True, slots=True)
class Send:
    """Send `frame` on the open connection (frames go out in the order they are returned)."""

    frame: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """The connection has ended for the core: close the socket with `code` and `reason`."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call `Session.timer_fired(timer)` after `delay` seconds, unless the connection ends first."""

    delay: float
    name: str
    generation: int
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """Renew the token in band for connection `generation`; the server closes it at `expires_at`."""

    generation: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Settle:
    """The reply to request `id` (None: its connection ended first) for whoever awaits it."""

    id: int | str
    reply: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Report:
    """An isolated failure: log it and hand it to the client's `error` callbacks."""

    error: BaseException
    where: str


@dataclass(frozen=True, slots=True)
class Emit:
    """Event `event` with `value` for the client's callbacks (`channel` None) or a subscription's."""

    event: str
    value: Any
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """A publication for `channel`'s callbacks and iterators (its position is already stored)."""

    channel: str
    publication: Publication


@dataclass(frozen=True, slots=True)
class Finish:
    """End `channel`'s running iterators (the subscription ended, or the client closed)."""

    channel: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Try the next connection after `delay` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Stop:
    """The client is closed: no further attempt."""


@dataclass(frozen=True, slots=True)
class AskToken:
    """A 4501: ask the provider once more, then feed `Session.recheck` (or `recheck_failed`)."""


Action = Send | Close | ArmTimer | Refresh | Settle | Report | Emit | Deliver | Finish | Reconnect | Stop | AskToken
Decision = Reconnect | Stop | AskToken
