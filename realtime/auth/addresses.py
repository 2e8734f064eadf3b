"""The client's address, for HTTP requests and WebSocket handshakes alike, with the same trusted proxies.

DRF's rule (`NUM_PROXIES` in REST_FRAMEWORK): the peer, or the address the configured number of
trusted proxies saw in `X-Forwarded-For`. Login throttling counts by it, and so do the socket's
per-address limits and its session rows.
"""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle


def client_address(request) -> str:
    """The client's address: the peer, or what the configured trusted proxies saw (DRF's rule)."""
    return BaseThrottle().get_ident(request)


class _ScopeRequest:
    """What DRF's `get_ident` reads of a request, taken from an ASGI scope (a WebSocket handshake)."""

    def __init__(self, scope: dict) -> None:
        client = scope.get("client") or ("", 0)
        self.META = {"REMOTE_ADDR": client[0] or ""}
        self.headers = {
            name.decode("latin1").lower(): value.decode("latin1")
            for name, value in scope.get("headers") or ()
            if name.lower() == b"x-forwarded-for"
        }


def scope_client_address(scope: dict) -> str:
    """`client_address` of a WebSocket handshake: the same rule, the same trusted proxies."""
    return client_address(_ScopeRequest(scope))
