"""Redirects: followed within the origin the client was given, refused to any other.

The token goes in the socket's first frame, and `PasswordLogin` posts the password or the
refresh token, so a redirect to another origin (scheme, host, port) would hand them to
whoever answers there. Both the socket's handshake and the HTTP calls refuse it with
`RealtimeError("redirect")`, which stops the client (retrying cannot change the answer).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from websockets.asyncio.client import connect as ws_connect

from .errors import REDIRECT, RealtimeError

DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{parts.port or DEFAULT_PORTS.get(scheme, 0)}"


def refused(url: str, target: str) -> RealtimeError:
    """The error for a redirect from `url` to `target`, another origin."""
    return RealtimeError(
        REDIRECT, f"{url} redirected to another origin ({origin(target)}): refused, the credentials stay here"
    )


class SameOriginConnect(ws_connect):
    """`websockets.asyncio.client.connect` that follows a redirect only within the URL's origin."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        """websockets' own checks first; then a new URI of another origin is refused."""
        result: Any = super().process_redirect(exc)
        if isinstance(result, str) and origin(urljoin(self.uri, result)) != origin(self.uri):
            return refused(self.uri, result)
        return result
