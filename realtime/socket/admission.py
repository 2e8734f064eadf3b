"""Unauthenticated sockets: a cap per process and per client address (PROTOCOL section 8).

A socket that arrives without handshake credentials holds one place here until it
authenticates or closes. A flood of anonymous sockets (idle ones, or ones that never
send a valid `auth`) can then hold at most MAX_UNAUTHENTICATED places in a process and
MAX_UNAUTHENTICATED_PER_ADDRESS per client address; beyond that a new one is refused at
the handshake (HTTP 403, before the consumer exists: a refusal costs the flood more than
the server), and the clients back off and come back. Sockets with credentials at the
handshake never wait for a place: a flood cannot lock them out.

The counts are this process's own, kept in memory on its event loop: no I/O, no lock.
`/healthz` reports the socket path saturated while the process cap is reached.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from channels.security.websocket import WebsocketDenier

from realtime.auth.addresses import scope_client_address
from realtime.support import metrics
from realtime.support.conf import realtime_settings
from realtime.support.state import current

PLACE = "realtime.place"  # the scope key of a socket's place


class Place:
    """A held place; `gate().release` gives it back (once, however often it is called)."""

    __slots__ = ("address", "held")

    def __init__(self, address: str) -> None:
        self.address = address
        self.held = True


class Gate:
    """The process's unauthenticated sockets, counted in total and per address."""

    def __init__(self) -> None:
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def admit(self, scope: dict[str, Any]) -> Place | None:
        """A place for a socket without credentials, or None when the process or its address is full."""
        settings = realtime_settings.values
        address = scope_client_address(scope)
        if self.total >= settings["MAX_UNAUTHENTICATED"]:
            return None
        if self.by_address[address] >= settings["MAX_UNAUTHENTICATED_PER_ADDRESS"]:
            return None
        self.total += 1
        self.by_address[address] += 1
        metrics.UNAUTHENTICATED.inc()
        return Place(address)

    def release(self, place: Place | None) -> None:
        if place is None or not place.held:
            return
        place.held = False
        self.total -= 1
        metrics.UNAUTHENTICATED.dec()
        left = self.by_address[place.address] - 1
        if left > 0:
            self.by_address[place.address] = left
        else:
            del self.by_address[place.address]

    def saturated(self) -> bool:
        """Whether the process holds as many unauthenticated sockets as it admits."""
        return self.total >= realtime_settings.MAX_UNAUTHENTICATED


def gate() -> Gate:
    """This process's gate (a part of its Node)."""
    return current().part(Gate)


def without_credentials(scope: dict[str, Any]) -> bool:
    """Whether the handshake carried no credentials at all, valid or not (after JWTAuthMiddleware)."""
    auth = scope.get("auth") or {}
    user = scope.get("user")
    return not auth.get("error") and not (user is not None and getattr(user, "is_authenticated", False))


class AdmissionGate:
    """ASGI middleware in front of the consumer: a socket without credentials needs a place.

    The place is in ``scope["realtime.place"]``; the consumer gives it back once the socket
    authenticates, and this middleware when the socket ends (whichever comes first).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not without_credentials(scope):
            return await self.inner(scope, receive, send)
        place = gate().admit(scope)
        if place is None:
            metrics.unauthenticated_refused()
            return await WebsocketDenier()(scope, receive, send)
        try:
            return await self.inner(dict(scope, **{PLACE: place}), receive, send)
        finally:
            gate().release(place)
