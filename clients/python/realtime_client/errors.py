"""The one exception the client raises: `RealtimeError`, carrying a protocol `code`.

Codes are the server's (`permission_denied`, `unauthorized`, ... see PROTOCOL §6) plus
the client's own: `not_connected` (no connection within the request timeout: never sent),
`timeout` (sent, no reply in time), `disconnected` (sent, the connection dropped before the
reply), `closed` (the client is closed, or closed before it connected),
`overflow` (an iterator's buffer was full and dropped a publication), `redirect` (the
server redirected to another origin: refused, see `redirects.py`).
"""

from __future__ import annotations

# Codes the client itself produces.
NOT_CONNECTED = "not_connected"
TIMEOUT = "timeout"
DISCONNECTED = "disconnected"
CLOSED = "closed"
OVERFLOW = "overflow"
REDIRECT = "redirect"

# A token provider raising RealtimeError with one of these stops the client (nothing will change).
TERMINAL_TOKEN_CODES = frozenset({"unauthorized", "forbidden", REDIRECT})


class RealtimeError(Exception):
    """A failed request or connection, with the protocol `code` and a human-readable `message`.

    `sent` (a request's error only, else None): False when the frame never left the client
    (safe to retry as is), True when it was written to a socket. `sent` with `timeout`,
    `disconnected` or `closed` is an unknown outcome: a `publish` may have happened (check `history`).
    """

    def __init__(
        self, code: str, message: str = "", *, close_code: int | None = None, sent: bool | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.sent = sent

    def __repr__(self) -> str:
        return f"RealtimeError({self.code!r}, {self.message!r})"
