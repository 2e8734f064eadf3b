"""The sockets alive in this process, for a graceful shutdown and the beat.

Below the consumer on purpose: the consumer registers each socket here, and
`realtime.runtime.node`'s shutdown says goodbye to them without importing the consumer.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from realtime.support.state import current


class LiveSocket(Protocol):
    """What the shutdown and the beat need of a socket."""

    address: str  # names it to control events (realtime.sessions.control)
    row: Any  # its session row (`realtime.sessions.rows.SessionRow`), once authenticated; else None

    def go_away(self) -> bool:
        """Tell the client the server is going away (1001); False when it was closing already."""


def live_addresses() -> set[str]:
    """The addresses of the sockets of this process whose consumer is still running."""
    return {socket.address for socket in list(live())}


def live_row_pks() -> frozenset[int]:
    """The primary keys of the session rows of the live sockets (the beat keeps only these open)."""
    return frozenset(row.pk for socket in list(live()) if (row := socket.row) is not None and row.pk is not None)


def live() -> weakref.WeakSet[LiveSocket]:
    """The live sockets of this process (a Node part). Weak: a socket that ended leaves without a goodbye."""
    return current().part((__name__, "live"), weakref.WeakSet)


def say_going_away() -> int:
    """Tell every socket of this process that the server is going away (1001); returns how many."""
    return sum(1 for socket in list(live()) if socket.go_away())
