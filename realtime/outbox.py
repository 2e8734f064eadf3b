"""A bounded send queue per connection.

The consumer never awaits the network: it puts frames here and a writer task
awaits the ASGI `send`. When the server applies backpressure (see
`realtime.daphne_adapter` for daphne) and the client does not read, the queue
grows; past `limit` bytes the connection is cut off (close 4013) and the queue
is dropped, so a slow client cannot grow the server's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Overflow(Exception):
    """The queue went over its byte limit: the client does not keep up."""


class Outbox:
    """FIFO of outgoing ASGI messages, drained by one writer task, bounded in bytes."""

    def __init__(self, send: Send, limit: int) -> None:
        self._send = send
        self.limit = limit
        self.queued_bytes = 0
        self._queue: deque[tuple[dict[str, Any], int]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._writer: asyncio.Task | None = None
        self.failed: BaseException | None = None

    def start(self) -> None:
        """Start the writer task (once the socket is accepted)."""
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())

    def put_text(self, text: str) -> None:
        """Queue one text frame; raise `Overflow` when that puts the queue over the limit."""
        if self._closed:
            return
        size = len(text)
        if self.queued_bytes + size > self.limit and self._queue:
            raise Overflow(f"send queue over {self.limit} bytes")
        self._queue.append(({"type": "websocket.send", "text": text}, size))
        self.queued_bytes += size
        self._wakeup.set()

    def close(self, final: list[dict[str, Any]], *, drop_queued: bool = False) -> None:
        """Queue the last messages (e.g. `disconnect` and `websocket.close`); nothing after them."""
        if self._closed:
            return
        if drop_queued:
            self._queue.clear()
            self.queued_bytes = 0
        for message in final:
            self._queue.append((message, 0))
        self._closed = True
        self._wakeup.set()

    @property
    def closed(self) -> bool:
        """True once `close()` was called: further frames are dropped."""
        return self._closed

    async def _write_loop(self) -> None:
        queue = self._queue
        try:
            while True:
                while queue:
                    message, size = queue.popleft()
                    self.queued_bytes -= size
                    await self._send(message)
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport is gone; the disconnect event follows
            self.failed = exc
            logger.debug("send failed: %r", exc)

    async def drain(self) -> None:
        """Wait until the writer has sent everything queued (used at close and in tests)."""
        if self._writer is not None and self._closed:
            await asyncio.shield(self._writer)

    def stop(self) -> None:
        """Cancel the writer (the socket is gone)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
