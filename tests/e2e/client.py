"""A small asyncio WebSocket client for the end-to-end tests, on the `websockets` library.

It speaks the wire protocol of docs/protocol.md against a real server: JSON text
frames in and out, with helpers that wait for a frame type (skipping the server's
heartbeat pings), send a request and return its reply, and check how the server
ended the connection: the `disconnect` frame *and* the WebSocket close code.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

RECV_TIMEOUT = 10.0  # a bound on waiting for a frame, never a measurement
OPEN_TIMEOUT = 10.0


class Client:
    """One WebSocket connection to `/ws/`, decoding every frame as JSON."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] | None = None

    @classmethod
    async def open(
        cls,
        ws_url: str,
        *,
        token: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = OPEN_TIMEOUT,
    ) -> Client:
        """Connect; `token` goes in an `Authorization: Bearer` header, `query` in the query string."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = ws_url + (f"?{urlencode(query)}" if query else "")
        ws = await connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=2,
            proxy=None,  # 127.0.0.1 only; never through a proxy from the environment
            compression=None,
            ping_interval=None,  # the protocol has its own heartbeat; keep the wire to what the test sends
            max_size=None,
        )
        return cls(ws)

    @classmethod
    async def authenticated(cls, ws_url: str, token: str, **kwargs: Any) -> Client:
        """Connect with a header token and read the pushed `welcome` (so the session row exists)."""
        client = await cls.open(ws_url, token=token, **kwargs)
        client.welcome = await client.recv_type("welcome")
        return client

    # ------------------------------------------------------------ frames

    async def send(self, frame: Any) -> None:
        """Send a frame: a str as is, bytes as a binary frame, anything else as JSON text."""
        if isinstance(frame, str | bytes):
            await self.ws.send(frame)
        else:
            await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next frame, decoded. Raises `ConnectionClosed` on a close, `TimeoutError` after `timeout`."""
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
        return json.loads(raw)

    async def recv_type(self, kind: str, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Skip the server's heartbeat pings until a frame of `kind` arrives; anything else fails."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.0, deadline - time.monotonic()))
            if frame.get("type") == kind:
                return frame
            assert frame == {"type": "ping"}, f"expected {kind!r}, got {frame}"

    async def request(self, frame: dict[str, Any], timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Send a request and return the next frame that is not a heartbeat ping (its reply)."""
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.recv(max(0.0, deadline - time.monotonic()))
            if reply != {"type": "ping"}:
                return reply

    async def ping(self, request_id: int | str = "p") -> None:
        """A client ping round trip; fails unless the reply is the matching `pong`."""
        reply = await self.request({"type": "ping", "id": request_id})
        assert reply == {"type": "pong", "id": request_id}, reply

    # ------------------------------------------------------------ closing

    async def expect_disconnect(self, code: int, reason: str | None = None, timeout: float = RECV_TIMEOUT) -> dict:
        """The `disconnect` frame with `code`, then the WebSocket close with the same code and reason;
        returns the frame."""
        frame = await self.recv_type("disconnect", timeout)
        assert frame["code"] == code, frame
        if reason is not None:
            assert frame["reason"] == reason, frame
        await self.expect_closed(code, timeout, reason=frame["reason"])
        return frame

    async def expect_closed(self, code: int, timeout: float = RECV_TIMEOUT, *, reason: str | None = None) -> None:
        """Nothing more, then the server's close frame with `code` (and `reason`, when given)."""
        try:
            async with asyncio.timeout(timeout):
                extra = await self.ws.recv()
        except ConnectionClosed as exc:
            received = exc.rcvd.code if exc.rcvd is not None else None
            assert received == code, f"closed with {received} ({exc}), expected {code}"
            if reason is not None:
                assert exc.rcvd.reason == reason, f"close frame reason {exc.rcvd.reason!r}, expected {reason!r}"
        else:
            raise AssertionError(f"expected the close {code}, got a frame: {extra!r}")

    @property
    def close_code(self) -> int | None:
        """The code of the close frame the server sent, once the connection is closed."""
        return self.ws.close_code

    async def close(self) -> None:
        """Close from the client side (code 1000); a connection already gone is fine."""
        try:
            await self.ws.close()
        except (ConnectionClosed, OSError):
            pass


class Inbox:
    """Every frame of one `Client`, read by a background task, for tests that send and receive at once.

    Replies resolve the request that carried their `id`; every frame but the server's
    heartbeat pings is kept in `frames`, in arrival order, so a test can look at how
    replies and pushes interleave. `wait_for(predicate)` waits until the predicate
    holds, woken by each new frame (bounded by a timeout, never polling). While an
    Inbox runs it is the client's only reader: do not call `Client.recv` meanwhile.
    """

    def __init__(self, client: Client, name: str = "") -> None:
        self.client = client
        self.name = name or "inbox"
        self.frames: list[dict[str, Any]] = []
        self.closed: ConnectionClosed | None = None
        self.last_offset: dict[str, int] = {}  # channel -> offset of the newest `message` frame
        self._pending: dict[Any, asyncio.Future] = {}
        self._waiters: list[asyncio.Future] = []
        self._ids = 0
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.client.ws.recv()
                frame = json.loads(raw)
                if frame == {"type": "ping"}:
                    continue
                self.frames.append(frame)
                if frame.get("type") == "message":
                    self.last_offset[frame["channel"]] = frame["offset"]
                future = self._pending.pop(frame.get("id"), None) if "id" in frame else None
                if future is not None and not future.done():
                    future.set_result(frame)
                self._wake()
        except ConnectionClosed as exc:
            self.closed = exc
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: connection closed before the reply"))
            self._pending.clear()
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def next_id(self) -> str:
        """A request id unique on this connection."""
        self._ids += 1
        return f"{self.name}-{self._ids}"

    async def start(self, frame: dict[str, Any]) -> asyncio.Future:
        """Send a request (an `id` is added when missing) and return the future of its reply."""
        frame = dict(frame)
        frame.setdefault("id", self.next_id())
        future = asyncio.get_running_loop().create_future()
        self._pending[frame["id"]] = future
        await self.client.send(frame)
        return future

    async def request(self, frame: dict[str, Any], timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Send a request and wait (at most `timeout`) for its reply."""
        future = await self.start(frame)
        async with asyncio.timeout(timeout):
            return await future

    async def wait_for(self, predicate: Any, timeout: float = RECV_TIMEOUT, what: str = "") -> None:
        """Wait until `predicate()` is true, re-checked on each frame; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.closed is not None:
                raise AssertionError(f"{self.name}: closed ({self.closed}) while waiting for {what or predicate}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = self.frames[-3:]
                raise AssertionError(f"{self.name}: no {what or predicate} within {timeout} s; last frames {tail}")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass

    async def wait_frame(self, match: dict[str, Any], timeout: float = RECV_TIMEOUT, start: int = 0) -> dict:
        """The first frame from index `start` on whose items include all of `match` (waiting for it)."""
        found: list[dict[str, Any]] = []
        checked = [start]  # frames before this index did not match: scan each frame once

        def seen() -> bool:
            frames = self.frames
            for index in range(checked[0], len(frames)):
                if all(frames[index].get(key) == value for key, value in match.items()):
                    found.append(frames[index])
                    return True
            checked[0] = len(frames)
            return False

        await self.wait_for(seen, timeout, what=f"frame {match}")
        return found[0]

    def of_type(self, kind: str, channel: str | None = None, start: int = 0) -> list[dict[str, Any]]:
        """The frames of one type (and channel) received so far, from index `start`."""
        return [
            frame
            for frame in self.frames[start:]
            if frame.get("type") == kind and (channel is None or frame.get("channel") == channel)
        ]

    async def stop(self) -> None:
        """Stop reading (the connection stays as it is)."""
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
