"""The one exception the client raises: `RealtimeError`, carrying a protocol `code`.

Codes are the server's (`permission_denied`, `unauthorized`, ... see PROTOCOL §6) plus
the client's own: `timeout` (no reply in time), `disconnected` (the connection dropped
before the reply), `closed` (the client is closed, or closed before it connected),
`overflow` (an iterator's buffer was full and dropped a publication).
"""

from __future__ import annotations

# Codes the client itself produces.
TIMEOUT = "timeout"
DISCONNECTED = "disconnected"
CLOSED = "closed"
OVERFLOW = "overflow"

# A token provider raising RealtimeError with one of these stops the client (nothing will change).
TERMINAL_TOKEN_CODES = frozenset({"unauthorized", "forbidden"})


class RealtimeError(Exception):
    """A failed request or connection, with the protocol `code` and a human-readable `message`."""

    def __init__(self, code: str, message: str = "", *, close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.close_code = close_code

    def __repr__(self) -> str:
        return f"RealtimeError({self.code!r}, {self.message!r})"
