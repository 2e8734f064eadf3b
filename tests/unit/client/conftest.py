"""Fixtures for the Python client's tests: a fake server, clients that are always closed, state recorders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from realtime_client import Client, ClientState, StateChange

from .fake_server import TIMEOUT, FakeConnection, FakeServer


class Recorder:
    """Collects the values of one event and lets a test await the n-th matching one."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, match: Callable[[Any], bool] = lambda item: True, count: int = 1, timeout: float = TIMEOUT):
        """The `count`-th recorded item for which `match` holds (waiting for it, bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                found = [item for item in self.items if match(item)]
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()


class States(Recorder):
    """Every `StateChange` of a client."""

    async def reach(self, state: ClientState, count: int = 1, timeout: float = TIMEOUT) -> StateChange:
        """The `count`-th change into `state`."""
        return await self.wait(lambda change: change.state is state, count, timeout)

    @property
    def states(self) -> list[ClientState]:
        return [change.state for change in self.items]


@pytest.fixture
async def server():
    async with FakeServer() as fake:
        yield fake


@pytest.fixture
async def make_client():
    """`make_client(url, **options)`: a Client with fast backoff, disconnected after the test."""
    clients: list[Client] = []

    def make(urls: str | list[str], **options: Any) -> Client:
        options.setdefault("token", "t0")
        options.setdefault("min_delay", 0.01)
        options.setdefault("max_delay", 0.05)
        options.setdefault("request_timeout", 2.0)
        client = Client(urls, **options)
        client.states = States()  # type: ignore[attr-defined]
        client.errors = Recorder()  # type: ignore[attr-defined]
        client.on("state", client.states)
        client.on("error", client.errors)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.disconnect()


async def connect(server: FakeServer, client: Client, **welcome: Any) -> tuple[FakeConnection, dict[str, Any]]:
    """Connect `client` to `server`: accept, read `auth`, send `welcome`; returns (connection, auth frame)."""
    connecting = asyncio.create_task(client.connect())
    conn = await server.accept()
    auth = await conn.welcome(**welcome)
    async with asyncio.timeout(TIMEOUT):
        await connecting
    return conn, auth


async def reconnect(server: FakeServer, **welcome: Any) -> tuple[FakeConnection, dict[str, Any]]:
    """The client's next connection, welcomed; returns (connection, auth frame)."""
    conn = await server.accept()
    auth = await conn.welcome(**welcome)
    return conn, auth


async def roundtrip(conn: FakeConnection) -> None:
    """Ping the client and expect its pong as the very next frame: every earlier frame was handled."""
    await conn.send({"type": "ping"})
    await conn.expect("pong", skip=())
