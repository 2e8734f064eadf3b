"""uvicorn's h11 and websockets-sansio protocols, with the two bounds they lack (project/serve.py uses them).

- `HTTPProtocol`: a connection gets REQUEST_HEAD_TIMEOUT seconds to send each request head, from
  its start and again after each response. uvicorn arms no timer before the first request, and
  its keep-alive timer stops at the first byte of the next one, so a client that sends half a
  head (or nothing) and stalls holds its connection, and a file descriptor, for ever.
- `WebSocketProtocol`: a handshake that websockets refuses (a header line over 8 KiB, too many
  headers, no valid request) is answered, 431 or 414 as websockets prepared it, and closed.
  uvicorn writes websockets' output only for the events it parses, so such a connection got no
  answer and stayed open.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

REQUEST_HEAD_TIMEOUT = 10.0  # seconds; a proxy in front has its own (docs/operations.md)


class HTTPProtocol(H11Protocol):
    """h11, closing a connection whose request head does not arrive in time."""

    head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head gets its own time

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_head_timer()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(event)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(REQUEST_HEAD_TIMEOUT, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        # IDLE: no complete request head since the timer started (a request being served is not IDLE).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets-sansio, answering and closing a handshake that websockets refused."""

    def handle_events(self) -> None:
        super().handle_events()
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.close_sent:
            self.close_sent = self.handshake_complete = True  # nothing else is sent on this connection
            self.transport.write(b"".join(self.conn.data_to_send()))  # the refusal websockets prepared, if any
            self.transport.close()
