"""A loopback TCP proxy in front of one server, that can break a connection as a network does.

`BlackHoleProxy(port)` listens on a free port of 127.0.0.1 and forwards each connection to
the server on `port`, byte for byte. `black_hole()` stops forwarding in both directions
without closing anything: the server goes on writing into a connection that no longer
delivers (as when a client's network went away without a close frame), and it learns of it
no sooner than after a real break. The proxy keeps reading what the server writes, and keeps
the WebSocket text frames it swallowed (`swallowed`, decoded JSON), so a test can wait until
the server wrote something the client never got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from .servers import HOST

WAIT = 20.0  # a bound on waiting for a frame, never a measurement


class _ServerFrames:
    """The text frames in a server's side of a WebSocket connection (HTTP 101 response, then frames).

    Server frames are not masked; the test clients negotiate no compression, so a text frame's
    payload is the JSON as sent.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.upgraded = False

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes; return the payloads of the text frames they completed."""
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return []
            del buffer[: end + 4]
            self.upgraded = True
        texts = []
        while len(buffer) >= 2:
            length, head = buffer[1] & 0x7F, 2
            if length >= 126:
                head = 4 if length == 126 else 10
                if len(buffer) < head:
                    break
                length = int.from_bytes(buffer[2:head], "big")
            if len(buffer) < head + length:
                break
            if buffer[0] & 0x0F == 0x1:  # a text frame
                texts.append(bytes(buffer[head : head + length]))
            del buffer[: head + length]
        return texts


class BlackHoleProxy:
    """A TCP proxy to `127.0.0.1:<port>` whose connections can be black-holed (see the module)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.holed = False
        self.swallowed: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()

    @property
    def ws_url(self) -> str:
        """The server's WebSocket endpoint, through this proxy."""
        return f"ws://{HOST}:{self.port}/ws/"

    async def start(self) -> BlackHoleProxy:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def black_hole(self) -> None:
        """From now on nothing passes, either way, and nothing is closed."""
        self.holed = True

    async def wait_swallowed(self, predicate, what: str, timeout: float = WAIT) -> None:
        """Wait until `predicate(frame)` holds for a frame the server wrote into the black hole."""
        deadline = time.monotonic() + timeout
        while not any(predicate(frame) for frame in self.swallowed):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the server wrote no {what} within {timeout} s: {self.swallowed[-3:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(HOST, self.target)
        self._writers += [client_writer, server_writer]
        for pump in (
            self._pump(client_reader, server_writer, None),
            self._pump(server_reader, client_writer, _ServerFrames()),
        ):
            task = asyncio.ensure_future(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: _ServerFrames | None):
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                texts = frames.feed(data) if frames is not None else []
                if self.holed:
                    self.swallowed += [json.loads(text) for text in texts]
                    self._changed.set()
                    continue
                writer.write(data)
                await writer.drain()
            if not self.holed:  # an end before the break is passed on; after it, nothing is
                writer.close()

    async def close(self) -> None:
        """Stop listening and drop every connection (both sides see the TCP connection end)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
