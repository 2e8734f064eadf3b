"""A scripted WebSocket server for the client's unit tests: real `websockets`, 127.0.0.1, port 0.

The test drives each connection: it awaits the client's frames (`recv`, `expect`), sends
frames, and closes with the code it wants. Nothing here sleeps; every wait is bounded.

    async with FakeServer() as server:
        client = Client(server.url, token="t", min_delay=0.01)
        await client.connect()          # while the test does:
        conn = await server.accept()    # the next connection
        auth = await conn.welcome()     # reads `auth`, replies `welcome`
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TIMEOUT = 5.0  # bound on every wait for the client; never a measurement


class FakeConnection:
    """One client connection as the server sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    @property
    def request_headers(self) -> Any:
        return self.ws.request.headers

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The client's next frame."""
        async with asyncio.timeout(timeout):
            return await self.frames.get()

    async def expect(self, kind: str, timeout: float = TIMEOUT, skip: tuple[str, ...] = ("pong",)) -> dict[str, Any]:
        """The client's next frame, which must be of type `kind` (frames of the `skip` types are passed over)."""
        while True:
            frame = await self.recv(timeout)
            if frame.get("type") in skip and kind not in skip:
                continue
            assert frame.get("type") == kind, f"expected {kind!r}, got {frame!r}"
            return frame

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame to the client."""
        await self.ws.send(json.dumps(frame))

    async def reply(self, request: dict[str, Any], kind: str, **fields: Any) -> None:
        """Answer `request` (same `id`) with a frame of type `kind`."""
        await self.send({"type": kind, "id": request["id"], **fields})

    async def welcome(
        self,
        session: str = "s_1",
        *,
        resumed: bool = False,
        heartbeat: float = 25,
        expires_at: int | None = None,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Read the client's `auth` and reply `welcome`; returns the `auth` frame."""
        auth = await self.expect("auth")
        await self.reply(
            auth,
            "welcome",
            session=session,
            user=user or {"id": 7, "username": "ann"},
            expires_at=expires_at,
            heartbeat=heartbeat,
            resume_window=120,
            resumed=resumed,
        )
        return auth

    async def subscribed(
        self,
        request: dict[str, Any],
        epoch: str = "e1",
        offset: int = 0,
        *,
        recovered: bool = False,
        publications: list[dict[str, Any]] | None = None,
    ) -> None:
        """Reply `subscribed` to a `subscribe` request."""
        await self.reply(
            request,
            "subscribed",
            channel=request["channel"],
            epoch=epoch,
            offset=offset,
            recovered=recovered,
            publications=publications or [],
        )

    async def message(self, channel: str, offset: int, data: Any = None, *, epoch: str = "e1", user: int = 7) -> None:
        """Push a live publication."""
        await self.send({"type": "message", **publication(channel, offset, data, epoch=epoch, user=user)})

    async def close(self, code: int, reason: str = "") -> None:
        """Close with `code` (after a `disconnect` frame, as the server does, for 4000+ codes)."""
        if code >= 4000:
            await self.send({"type": "disconnect", "code": code, "reason": reason, "reconnect": code < 4500})
        await self.ws.close(code, reason)

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait until the client's side is gone; returns the close code the client sent."""
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.close_code


def publication(channel: str, offset: int, data: Any = None, *, epoch: str = "e1", user: int | None = 7) -> dict:
    """A publication as the server sends it."""
    return {"channel": channel, "epoch": epoch, "offset": offset, "data": data, "user": user, "ts": 1000 + offset}


class FakeServer:
    """A real WebSocket server on 127.0.0.1 whose connections the test scripts one by one.

    `redirects` maps a path to a `Location`: a handshake for that path is answered 302.
    `handshakes` records the path of every handshake request that reached the server.
    """

    def __init__(self, redirects: dict[str, str] | None = None) -> None:
        self.connections: asyncio.Queue[FakeConnection] = asyncio.Queue()
        self.accepted: list[FakeConnection] = []
        self.handshakes: list[str] = []
        self.redirects = redirects or {}
        self._server: Any = None

    @property
    def url(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/"

    async def start(self) -> FakeServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None, process_request=self._redirect)
        return self

    def _redirect(self, ws: ServerConnection, request: Any) -> Any:
        self.handshakes.append(request.path)
        location = self.redirects.get(request.path)
        if location is None:
            return None
        response = ws.respond(302, "moved\n")
        response.headers["Location"] = location
        return response

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def accept(self, timeout: float = TIMEOUT) -> FakeConnection:
        """The next connection the client opens."""
        async with asyncio.timeout(timeout):
            return await self.connections.get()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConnection(ws)
        self.accepted.append(conn)
        await self.connections.put(conn)
        try:
            async for text in ws:
                frame = json.loads(text)
                conn.received.append(frame)
                await conn.frames.put(frame)
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            conn.closed.set()


def refused_url() -> str:
    """A ws:// URL on a local port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws/"


class FakeHTTP:
    """A tiny HTTP/1.1 server on 127.0.0.1: `routes[path] -> (status, body)` or `(status, body, headers)`;
    records (path, JSON body)."""

    def __init__(self, routes: dict[str, tuple[Any, ...]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, Any]] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> FakeHTTP:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(TIMEOUT):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
            body = json.loads(await reader.readexactly(length)) if length else None
            self.requests.append((path, body))
            status, reply, *extra = self.routes.get(path, (404, {"code": "not_found", "message": path}))
            data = json.dumps(reply).encode()
            headers = "".join(f"{name}: {value}\r\n" for name, value in (extra[0] if extra else {}).items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"{headers}Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
            writer.close()
