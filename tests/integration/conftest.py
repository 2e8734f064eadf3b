"""In-process socket tests: the real middleware stack and consumer, driven by
Channels' `WebsocketCommunicator`, with the in-memory layer unless a test asks for Redis."""

from __future__ import annotations

import json

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from accounts.middleware import JWTAuthMiddlewareStack
from realtime.routing import websocket_urlpatterns

RECEIVE_TIMEOUT = 5  # generous: a limit on waiting for an event, never a measurement


class Socket:
    """A test client over a communicator, with assertion helpers."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame) -> None:
        """Send a frame: a dict as JSON, a str as is, bytes as a binary frame."""
        if isinstance(frame, bytes):
            await self.communicator.send_to(bytes_data=frame)
        elif isinstance(frame, str):
            await self.communicator.send_to(text_data=frame)
        else:
            await self.communicator.send_json_to(frame)

    async def recv(self, timeout: float = RECEIVE_TIMEOUT) -> dict:
        """The next frame, decoded; fails on a close instead of a frame."""
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        return json.loads(output["text"])

    async def recv_type(self, kind: str, timeout: float = RECEIVE_TIMEOUT) -> dict:
        """Skip heartbeats until a frame of `kind` arrives."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame
            assert frame["type"] == "ping", f"expected {kind}, got {frame}"

    async def request(self, frame: dict) -> dict:
        """Send a request and return its reply (skipping server pings)."""
        await self.send(frame)
        while True:
            reply = await self.recv()
            if reply.get("type") != "ping":
                return reply

    async def expect_disconnect(self, code: int, reason: str | None = None) -> dict:
        """The `disconnect` frame, then the close with the same code."""
        frame = await self.recv_type("disconnect")
        assert frame["code"] == code, frame
        if reason is not None:
            assert frame["reason"] == reason, frame
        closed = await self.communicator.receive_output(RECEIVE_TIMEOUT)
        assert closed == {"type": "websocket.close", "code": code}, closed
        return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
def ws_app():
    """The WebSocket side of project/asgi.py: JWT middleware, router, consumer."""
    return JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
async def connect(ws_app):
    """Open sockets: `await connect(token=...)`, `await connect(headers=[...], query="...")`."""
    opened: list[Socket] = []

    async def open_socket(
        *, token: str | None = None, query: str = "", headers: list | None = None, path: str = "/ws/", app=None
    ) -> Socket:
        headers = list(headers or [])
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        communicator = WebsocketCommunicator(app or ws_app, path + (f"?{query}" if query else ""), headers=headers)
        connected, _ = await communicator.connect(timeout=RECEIVE_TIMEOUT)
        assert connected
        socket = Socket(communicator)
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        if not socket.communicator.future.done():
            await socket.communicator.disconnect()
