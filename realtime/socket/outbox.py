"""A bounded send queue per connection.

The consumer never awaits the network: it puts frames here and a writer task
awaits the ASGI `send` (a task only while there is something to send). When the server applies backpressure (see
`realtime.server.daphne` for daphne) and the client does not read, the queue
grows; past `limit` bytes (UTF-8, as sent: not characters) the connection is cut
off (close 4013) and the queue is dropped, so a slow client cannot grow the
server's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.core.limits import utf8_size

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125, two of them the code


def close_message(code: int, reason: str) -> dict[str, Any]:
    """The ASGI `websocket.close` for `code`, carrying `reason` (the `disconnect` frame's) in the close frame."""
    encoded = reason.encode()[:MAX_CLOSE_REASON]
    return {"type": "websocket.close", "code": int(code), "reason": encoded.decode(errors="ignore")}


class Overflow(Exception):
    """The queue went over its byte limit: the client does not keep up."""


class Outbox:
    """FIFO of outgoing ASGI messages, drained by a writer task, bounded in bytes.

    The writer exists only while there is something to send: it starts at the first
    frame queued and ends when the queue is empty, so an idle connection holds no task
    (thousands of idle sockets are most of a server's connections).
    """

    def __init__(self, send: Send, limit: int) -> None:
        self._send = send
        self.limit = limit
        self.queued_bytes = 0
        # Only while something waits to be sent: an idle socket holds no deque (an empty one is a
        # 64-slot block, about 0.6 KiB: a tenth of what an idle socket is here beyond the server's).
        self._queue: deque[tuple[dict[str, Any], int]] | None = None
        self._started = False
        self._closed = False
        self._writer: asyncio.Task | None = None
        self.failed: BaseException | None = None

    def start(self) -> None:
        """Allow sending (once the socket is accepted); what was queued before goes out now."""
        self._started = True
        self._kick()

    def _kick(self) -> None:
        # A writer that is still running picks the new message up: it checks the queue
        # after each send, and ends only when it finds the queue empty (no await between).
        if self._started and self.failed is None and self._queue and (self._writer is None or self._writer.done()):
            self._writer = asyncio.ensure_future(self._write())

    def put_text(self, text: str, size: int | None = None) -> None:
        """Queue one text frame of `size` UTF-8 bytes (measured here when not given: the fan-out measures a
        publication once for all its subscribers); raise `Overflow` when that puts the queue over the limit."""
        if self._closed or self.failed is not None:  # after a failed send the disconnect event follows
            return
        if size is None:
            size = utf8_size(text)
        if self.queued_bytes + size > self.limit and self._queue:
            raise Overflow(f"send queue over {self.limit} bytes")
        if self._queue is None:
            self._queue = deque()
        self._queue.append(({"type": "websocket.send", "text": text}, size))
        self.queued_bytes += size
        self._kick()

    def close(self, final: list[dict[str, Any]], *, drop_queued: bool = False) -> None:
        """Queue the last messages (e.g. `disconnect` and `websocket.close`); nothing after them."""
        if self._closed:
            return
        if self._queue is None:
            self._queue = deque()
        if drop_queued:
            self._queue.clear()
            self.queued_bytes = 0
        for message in final:
            self._queue.append((message, 0))
        self._closed = True
        self._kick()

    @property
    def closed(self) -> bool:
        """True once `close()` was called: further frames are dropped."""
        return self._closed

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue:
                message, size = queue.popleft()
                self.queued_bytes -= size
                await self._send(message)
            if self._queue is queue and not self._closed:
                self._queue = None  # all sent: the next frame makes a new one
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport is gone; the disconnect event follows
            self.failed = exc
            queue.clear()
            self.queued_bytes = 0
            logger.debug("send failed: %r", exc)

    async def drain(self) -> None:
        """Wait until the writer has sent everything queued (used at close and in tests)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def stop(self) -> None:
        """Cancel the writer (the socket is gone); nothing is sent after this."""
        self._started = False
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
