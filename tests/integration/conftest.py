"""In-process socket tests: the real middleware stack and consumer, driven by
Channels' `WebsocketCommunicator`, with the in-memory layer unless a test asks for Redis."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from realtime.asgi import websocket_application
from realtime.engine.memory import MemoryEngine
from realtime.engine.redis import RedisEngine
from tests.conftest import make_tokens, override_realtime
from tests.topology_fixtures import shared_cluster  # noqa: F401 - a fixture

RECEIVE_TIMEOUT = 5  # generous: a limit on waiting for an event, never a measurement


class Socket:
    """A test client over a communicator, with assertion helpers."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.backlog: list[dict] = []
        self.subprotocol: str | None = None  # the one the server chose in its accept

    async def send(self, frame) -> None:
        """Send a frame: a dict as JSON, a str as is, bytes as a binary frame."""
        if isinstance(frame, bytes):
            await self.communicator.send_to(bytes_data=frame)
        elif isinstance(frame, str):
            await self.communicator.send_to(text_data=frame)
        else:
            await self.communicator.send_json_to(frame)

    async def recv(self, timeout: float = RECEIVE_TIMEOUT) -> dict:
        """The next frame, decoded (pushes set aside by `request` first); fails on a close."""
        if self.backlog:
            return self.backlog.pop(0)
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        return json.loads(output["text"])

    async def recv_type(self, kind: str, timeout: float = RECEIVE_TIMEOUT) -> dict:
        """The next frame of `kind`, skipping heartbeats and presence pushes of other kinds."""
        skippable = {"ping", "join", "leave"} - {kind}
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame
            assert frame["type"] in skippable, f"expected {kind}, got {frame}"

    async def request(self, frame) -> dict:
        """Send a request and return its reply; pushes that come first are kept for `recv`."""
        await self.send(frame)
        request_id = frame.get("id") if isinstance(frame, dict) else None
        held = []
        while True:
            output = await self.communicator.receive_output(RECEIVE_TIMEOUT)
            assert output["type"] == "websocket.send", f"expected a reply, got {output} after {held}"
            reply = json.loads(output["text"])
            if reply.get("type") == "ping":
                continue
            if request_id is None or reply.get("id") == request_id or reply["type"] == "disconnect":
                self.backlog.extend(held)
                return reply
            held.append(reply)

    async def expect_disconnect(self, code: int, reason: str | None = None) -> dict:
        """The `disconnect` frame, then the close with the same code and reason."""
        frame = await self.recv_type("disconnect")
        assert frame["code"] == code, frame
        if reason is not None:
            assert frame["reason"] == reason, frame
        closed = await self.communicator.receive_output(RECEIVE_TIMEOUT)
        assert closed == {"type": "websocket.close", "code": code, "reason": frame["reason"]}, closed
        return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
def ws_app():
    """The WebSocket side of `realtime_application`: JWT middleware, router, gate, consumer."""
    return websocket_application()


@pytest.fixture
async def connect(ws_app):
    """Open sockets: `await connect(token=...)`, `await connect(headers=[...], query="...")`."""
    opened: list[Socket] = []

    async def open_socket(
        *,
        token: str | None = None,
        query: str = "",
        headers: list | None = None,
        path: str = "/ws/",
        app=None,
        client: tuple[str, int] | None = None,
        subprotocols: list[str] | None = None,
    ) -> Socket:
        headers = list(headers or [])
        if not any(name == b"host" for name, _ in headers):  # as every client sends (an allowed one)
            headers.append((b"host", b"localhost:8000"))
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        target = path + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(app or ws_app, target, headers=headers, subprotocols=subprotocols)
        if client is not None:  # the peer address, as the server reports it
            communicator.scope["client"] = client
        connected, subprotocol = await communicator.connect(timeout=RECEIVE_TIMEOUT)
        assert connected
        socket = Socket(communicator)
        socket.subprotocol = subprotocol
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        if not socket.communicator.future.done():
            await socket.communicator.disconnect()


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    """The embedded default (the memory engine), or Redis."""
    if request.param == "memory":
        yield "memory"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        with override_realtime(REDIS_URL=url, REDIS_PREFIX=prefix):
            yield "redis"


@pytest.fixture
def login(connect, make_user):
    """Open an authenticated socket for a (new or given) user: `await login("ann")`."""
    users = {}

    async def open_for(username="ann", **kwargs):
        if username not in users:
            users[username] = await sync_to_async(make_user)(username)
        access, _ = await sync_to_async(make_tokens)(users[username])
        socket = await connect(token=access, **kwargs)
        socket.welcome = await socket.recv_type("welcome")
        socket.user = users[username]
        return socket

    return open_for


@contextmanager
def engine_backend(request):
    """The in-memory engine, or Redis, by `request.param`."""
    if request.param == "memory":
        yield "memory"
    else:
        yield request.getfixturevalue("redis_layer") and "redis"


@pytest.fixture(params=["memory", "redis"])
def engine(request):
    """Run the test on the in-memory engine and again on Redis."""
    with engine_backend(request) as kind:
        yield kind


@pytest.fixture(params=["memory", "redis", "cluster"])
async def bare_engine(request):
    """An engine of its own, without sockets: the memory one, or Redis (or a Redis Cluster) under this test's prefix."""
    if request.param == "memory":
        yield MemoryEngine()
        return
    if request.param == "cluster":
        from realtime.engine.cluster import ClusterEngine

        engine = ClusterEngine(request.getfixturevalue("shared_cluster").url, request.getfixturevalue("redis_prefix"))
    else:
        engine = RedisEngine(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
    yield engine
    await engine.close()

