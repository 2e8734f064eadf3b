"""One WebSocket connection of the client, as I/O: its socket, writer and tasks.

Every task started for a connection (the writer, a refresh, a subscribe retry) belongs
to it and is cancelled when it ends, so nothing scheduled in one connection runs in the
next (CLIENTS.md: "refresh that outlives its connection"). What the protocol knows of the
connection (requests in flight, liveness) is the session core's `Link` (link.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.exceptions import ConnectionClosed

Reporter = Callable[[BaseException, str], None]

CLOSE_TIMEOUT = 2.0  # bound on a local close handshake with a peer that may be gone


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON text for the wire."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


class Connection:
    """A connected socket plus everything tied to its lifetime."""

    def __init__(self, ws: Any, generation: int, url: str, report: Reporter, logger: logging.Logger) -> None:
        self.ws = ws
        self.generation = generation
        self.url = url
        self._report = report
        self._logger = logger
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.spawn(self._write(), "writer")

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame; the writer sends frames in call order."""
        self._outbox.put_nowait(encode(frame))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as a task of this connection: supervised, cancelled when the connection ends."""
        task = asyncio.get_running_loop().create_task(coro, name=f"realtime-{name}-{self.generation}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._report(task.exception(), task.get_name())

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                return  # the reader sees the close and ends the connection

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket, bounded in time; abort the transport if the peer does not answer."""
        try:
            await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._logger.debug("close of %s failed: %r", self.url, exc)
            transport = getattr(self.ws, "transport", None)
            if transport is not None:
                transport.abort()

    async def shutdown(self, code: int = 1000, reason: str = "") -> None:
        """End the connection: stop its tasks, close the socket."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await self.close(code, reason)
        if tasks:
            await asyncio.wait(tasks)
