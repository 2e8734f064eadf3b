"""The sockets alive in this process, for a graceful shutdown.

Below the consumer on purpose: the consumer registers each socket here, and
`realtime.node`'s shutdown says goodbye to them without importing the consumer.
"""

from __future__ import annotations

import weakref
from typing import Protocol


class LiveSocket(Protocol):
    """What the shutdown needs of a socket."""

    def go_away(self) -> bool:
        """Tell the client the server is going away (1001); False when it was closing already."""


# Weak: a socket that ended is gone from here without a goodbye of its own.
LIVE: weakref.WeakSet[LiveSocket] = weakref.WeakSet()


def say_going_away() -> int:
    """Tell every socket of this process that the server is going away (1001); returns how many."""
    return sum(1 for socket in list(LIVE) if socket.go_away())
