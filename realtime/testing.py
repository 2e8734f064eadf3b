"""Test helpers: a project tests its own namespaces, rules and observers without a server process.

`connect` opens a socket on the project's ASGI application in the test's own event loop
(asgiref's `ApplicationCommunicator`, as Channels' `WebsocketCommunicator` does; its package
needs daphne): the Host/Origin/JWT checks, the consumer and the engine are the real ones,
only the network is left out. INTEGRATION.md section 9::

    from django.core.asgi import get_asgi_application
    from realtime.asgi import realtime_application
    from realtime.publish import publish
    from realtime.testing import connect

    application = realtime_application(get_asgi_application())  # or: from mysite.asgi import application

    @pytest.mark.django_db(transaction=True)
    async def test_members_hear_the_room(member):
        async with connect(application, member, subscribe=["room:kitchen"]) as client:
            await publish("room:kitchen", {"text": "hi"})
            assert (await client.receive("message"))["data"] == {"text": "hi"}

The database: use `pytest.mark.django_db(transaction=True)` or `TransactionTestCase`, not
`TestCase` nor plain `django_db`. The consumer reads the user and writes its session row
through Channels' `database_sync_to_async`, which closes the calling thread's connection when
it is inside a transaction; and revocations, observers and the like act `on_commit`, which a
test transaction never reaches. Under `TestCase` that thread is the test's own (`connect`
refuses to run there, saying so); under plain `django_db` it is another one, on a connection
of its own that does not see the test's uncommitted rows (the socket is refused with 4501).

`fresh_node()` gives a test a Node of its own (`realtime.support.state`): the engine, the
hub, the trackers and the live sockets of no other test; `async with fresh_node()` also stops
the node's beat and closes what it made (Redis clients, listeners) when the block ends::

    @pytest.fixture(autouse=True)
    async def node():
        async with fresh_node() as node:
            yield node

Every wait is bounded (`timeout`, 5 s by default) and a helper that gets something else than
what it waits for fails at once, saying what came instead: `FrameTimeout` and `UnexpectedFrame`
are `AssertionError`s, so a test fails with the frame in its message. A timeout leaves the
socket open (unlike `WebsocketCommunicator.receive_output`, which ends the application).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http.request import validate_host
from rest_framework_simplejwt import settings as jwt_settings  # the module: SIMPLE_JWT changes rebind api_settings

from realtime.auth.tokens import PreciseAccessToken
from realtime.runtime import node as registration
from realtime.support.state import Node, replace

__all__ = ["TIMEOUT", "Client", "FrameTimeout", "RequestRefused", "UnexpectedFrame", "connect", "fresh_node"]

TIMEOUT = 5.0  # seconds: a bound on waiting for an event, generous for a loaded CI machine
# Pushes that `receive` passes over unless asked for them: the heartbeat, and presence that
# a test about something else would otherwise have to drain.
SKIPPED = frozenset({"ping", "join", "leave"})
CLOSE = "websocket.close"  # the ASGI message of the server's close, kept among the frames

Frame = dict[str, Any]
Header = tuple[bytes | str, bytes | str]


class UnexpectedFrame(AssertionError):
    """The server sent something else than what a helper waited for.

    `frame` is what it sent: a frame, or the ASGI close message (`{"type": "websocket.close",
    "code": ..., "reason": ...}`) when the socket closed instead.
    """

    def __init__(self, message: str, frame: Frame | None) -> None:
        super().__init__(message)
        self.frame = frame


class RequestRefused(UnexpectedFrame):
    """A request of `subscribe`, `unsubscribe` or `publish` got an `error` reply (`frame`; `code` its code)."""

    @property
    def code(self) -> str:
        return self.frame["code"] if self.frame else ""


class FrameTimeout(AssertionError, TimeoutError):
    """Nothing of what a helper waited for arrived in time; the socket stays open."""


@dataclass(frozen=True)
class _Wait:
    """One bounded wait: what for (for the messages), its length and its end (loop time)."""

    what: str
    seconds: float
    until: float


class Client:
    """One authenticated socket of a test; made by `connect`.

    `welcome` is the server's `welcome` frame, `communicator` the `_Communicator`
    underneath (for what the helpers do not cover), `timeout` the default bound of each wait.
    """

    def __init__(self, communicator: _Communicator, timeout: float) -> None:
        self.communicator = communicator
        self.timeout = timeout
        self.welcome: Frame = {}
        # Frames read from the socket but not yet consumed (pushes that came before a reply,
        # or a frame a failed `receive` put back), the server's close message included.
        self._backlog: deque[Frame] = deque()
        self._ids = itertools.count(1)
        self._closed = False

    # ------------------------------------------------------------ sending

    async def send(self, frame: Frame | str | bytes) -> None:
        """Send a frame: a dict as JSON, a str as is, bytes as a binary frame (for tests of bad input)."""
        if isinstance(frame, bytes):
            await self.communicator.send_to(bytes_data=frame)
        elif isinstance(frame, str):
            await self.communicator.send_to(text_data=frame)
        else:
            await self.communicator.send_json_to(frame)

    async def request(self, frame: Frame, *, timeout: float | None = None) -> Frame:
        """Send a request and return its reply, an `error` included (an `id` is added if it has none).

        Pushes that arrive before the reply are kept for `receive`, in order; a server `ping`
        is answered. An `error` without `id` counts as the reply too: the server sends one when
        it could not read the request's id (a frame over MAX_FRAME_BYTES, an invalid `id`).
        """
        frame = {**frame, "id": frame["id"] if "id" in frame else next(self._ids)}
        wait = self._wait(f"reply to {frame.get('type')!r} id {frame['id']!r}", timeout)
        self._check_open(wait.what)
        await self.send(frame)
        held: list[Frame] = []
        try:
            while True:
                reply = await self._read(wait)
                if reply.get("id") == frame["id"] or (reply.get("type") == "error" and "id" not in reply):
                    return reply
                if reply.get("type") == "ping":
                    await self.send({"type": "pong"})
                    continue
                held.append(reply)
                if reply.get("type") in ("disconnect", CLOSE):
                    raise UnexpectedFrame(f"the server ended the socket before the {wait.what}: {reply}", reply)
        finally:
            self._backlog.extend(held)

    async def subscribe(self, channel: str, **options: Any) -> Frame:
        """Subscribe (`options`: `recover=...`) and return the `subscribed` reply; `RequestRefused` on an error."""
        return await self._expect("subscribed", {"type": "subscribe", "channel": channel, **options})

    async def unsubscribe(self, channel: str) -> Frame:
        """Unsubscribe and return the `unsubscribed` reply; `RequestRefused` on an error."""
        return await self._expect("unsubscribed", {"type": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, data: Any) -> Frame:
        """Publish from this socket (the namespace's publish rule applies) and return the `published` reply."""
        return await self._expect("published", {"type": "publish", "channel": channel, "data": data})

    async def _expect(self, kind: str, frame: Frame) -> Frame:
        reply = await self.request(frame)
        if reply.get("type") == "error":
            raise RequestRefused(f"{frame['type']} {frame['channel']!r} was refused: {reply}", reply)
        if reply.get("type") != kind:
            raise UnexpectedFrame(f"expected {kind!r} in reply to {frame['type']}, got {reply}", reply)
        return reply

    # ------------------------------------------------------------ receiving

    async def receive(self, type: str | None = None, *, timeout: float | None = None) -> Frame:  # noqa: A002
        """The next frame of `type` (any type when None), passing over `ping` (answered with `pong`),
        `join` and `leave` unless `type` names them.

        Anything else that comes first fails the wait (`UnexpectedFrame`, the frame kept for the
        next `receive`), as does the socket's close; `FrameTimeout` when nothing comes in time.
        """
        wait = self._wait(f"{type!r} frame" if type else "frame", timeout)
        while True:
            frame = self._backlog.popleft() if self._backlog else await self._read(wait)
            kind = frame.get("type")
            if kind == type or (type is None and kind not in SKIPPED and kind != CLOSE):
                return frame
            if kind == "ping":
                await self.send({"type": "pong"})
            elif kind not in SKIPPED:
                self._backlog.appendleft(frame)
                if kind == CLOSE:
                    raise UnexpectedFrame(
                        f"the socket closed ({frame.get('code')}) while awaiting a {wait.what}", frame
                    )
                raise UnexpectedFrame(f"expected a {wait.what}, got {frame}", frame)

    async def expect_disconnect(self, code: int, reason: str | None = None, *, timeout: float | None = None) -> Frame:
        """Await the server's `disconnect` with `code` (and `reason`), then its close with the same;
        answer the close, so the consumer ends. Returns the `disconnect` frame."""
        frame = await self.receive("disconnect", timeout=timeout)
        if frame.get("code") != code or (reason is not None and frame.get("reason") != reason):
            expected = f"{code} {reason}" if reason is not None else f"{code}"
            raise UnexpectedFrame(f"expected a disconnect {expected}, got {frame}", frame)
        closed = self._backlog.popleft() if self._backlog else await self._read(self._wait("close", timeout))
        if closed.get("type") != CLOSE or closed.get("code") != code:
            raise UnexpectedFrame(f"expected the close {code} after {frame}, got {closed}", closed)
        await self.close(code)
        return frame

    async def close(self, code: int = 1000) -> None:
        """Close the socket from the client's side and wait for the consumer to end (once; later calls
        do nothing). Raises what the application raised, if it failed."""
        if self._closed:
            return
        self._closed = True
        app = self.communicator.future
        if not app.done():
            await self.communicator.send_input({"type": "websocket.disconnect", "code": code})
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(app)
            except TimeoutError:
                app.cancel()
                raise FrameTimeout(f"the application did not end within {self.timeout} s of the close") from None
        if not app.cancelled():
            app.result()

    # ------------------------------------------------------------ the socket's output

    def _wait(self, what: str, timeout: float | None) -> _Wait:
        seconds = self.timeout if timeout is None else timeout
        return _Wait(what, seconds, asyncio.get_running_loop().time() + seconds)

    def _check_open(self, awaited: str) -> None:
        ended = next((frame for frame in self._backlog if frame.get("type") in ("disconnect", CLOSE)), None)
        if self._closed or ended is not None:
            raise UnexpectedFrame(f"the socket has ended ({ended or 'closed by the test'}): no {awaited}", ended)

    async def _read(self, wait: _Wait) -> Frame:
        """The next frame the application sends, or its close message; waits until `wait.until`."""
        queue = self.communicator.output_queue
        app = self.communicator.future
        if queue.empty():
            if app.done():
                app.result()  # its exception, if it failed
                raise UnexpectedFrame(f"the application has ended: no {wait.what}", None)
            getter = asyncio.ensure_future(queue.get())
            remaining = max(0.0, wait.until - asyncio.get_running_loop().time())
            try:
                # Races the application too: a consumer that fails surfaces now, not at the timeout.
                await asyncio.wait({getter, app}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                getter.cancel()  # a cancelled get leaves its item in the queue
            if getter.done() and not getter.cancelled():
                return self._decode(getter.result())
            if queue.empty():
                if app.done():
                    app.result()
                    raise UnexpectedFrame(f"the application ended without closing the socket: no {wait.what}", None)
                raise FrameTimeout(f"no {wait.what} within {wait.seconds:g} s")
        return self._decode(queue.get_nowait())

    @staticmethod
    def _decode(message: dict[str, Any]) -> Frame:
        if message["type"] == CLOSE:
            return {"type": CLOSE, "code": message.get("code", 1000), "reason": message.get("reason", "")}
        if message["type"] != "websocket.send" or message.get("text") is None:
            raise UnexpectedFrame(f"expected a text frame, got {message}", message)
        return json.loads(message["text"])


@asynccontextmanager
async def connect(
    application: Any,
    user: Any = None,
    *,
    path: str = "/ws/",
    token: str | None = None,
    headers: Iterable[Header] = (),
    subscribe: Iterable[str] = (),
    timeout: float = TIMEOUT,
) -> AsyncIterator[Client]:
    """An authenticated socket of `user` on `application`, for the length of the `async with`.

    `application` is the project's ASGI application (`realtime_application(...)`) or the bare
    `websocket_application()`. The handshake carries an allowed `Host` and its `Origin` (from
    ALLOWED_HOSTS) and `Authorization: Bearer` with a fresh access token of `user` (or `token`,
    for a token made otherwise, or a bad one); `headers` add to or replace these. `path` may
    carry a query string (`"/ws/?resume=..."`). Returns once `welcome` arrived (`client.welcome`)
    and every channel of `subscribe` is subscribed; `UnexpectedFrame` (with the server's
    `disconnect`) when the socket is not authenticated. At the end the socket closes with 1000.
    """
    minted = None
    if token is None:
        if user is None:
            raise TypeError("connect() needs a user, or a token")
        token = minted = str(PreciseAccessToken.for_user(user))
    if await sync_to_async(_in_transaction)():  # the thread the consumer's database work runs in
        raise RuntimeError(
            "realtime.testing.connect() runs inside a database transaction (a django.test.TestCase?): the socket "
            "would close the test's database connection, and nothing on_commit would happen. "
            "Use TransactionTestCase, or @pytest.mark.django_db(transaction=True)."
        )
    communicator = _Communicator(application, path, _handshake_headers(token, headers))
    client = Client(communicator, timeout)
    try:
        try:
            accepted, detail = await communicator.connect(timeout)
        except TimeoutError:  # (the communicator has cancelled the application)
            client._closed = True
            raise FrameTimeout(f"no answer to the handshake within {timeout:g} s") from None
        if not accepted:
            client._closed = True
            raise UnexpectedFrame(
                f"the handshake was refused (close {detail}): is the Host allowed (ALLOWED_HOSTS), the path routed?",
                {"type": CLOSE, "code": detail, "reason": ""},
            )
        try:
            client.welcome = await client.receive("welcome")
        except UnexpectedFrame as exc:
            who = "the token" if minted is None else f"user {user}"
            hint = ""
            if minted is not None and (exc.frame or {}).get("code") == 4501:
                hint = " (is the user active, and committed? see realtime.testing on transactions)"
            raise UnexpectedFrame(f"no welcome for {who}: the server sent {exc.frame}{hint}", exc.frame) from None
        for channel in subscribe:
            await client.subscribe(channel)
        yield client
    finally:
        await client.close()


def _in_transaction() -> bool:
    return any(connections[alias].in_atomic_block for alias in connections)


def _handshake_headers(token: str, extra: Iterable[Header]) -> list[tuple[bytes, bytes]]:
    """`extra` (encoded), plus the Host, Origin and bearer header it does not name itself."""
    headers = [(_bytes(name).lower(), _bytes(value)) for name, value in extra]
    named = {name for name, _ in headers}
    header_name = jwt_settings.api_settings.AUTH_HEADER_NAME.removeprefix("HTTP_").lower().replace("_", "-").encode()
    types = jwt_settings.api_settings.AUTH_HEADER_TYPES
    scheme = types if isinstance(types, str) else types[0]
    host = dict(headers).get(b"host", b"").decode("latin1") or _allowed_host()
    defaults = {
        b"host": host.encode("latin1"),
        b"origin": f"http://{host}".encode("latin1"),  # the server's own origin (matters to the cookie only)
        header_name: f"{scheme} {token}".encode("latin1"),
    }
    return headers + [(name, value) for name, value in defaults.items() if name not in named]


def _allowed_host() -> str:
    """A host name ALLOWED_HOSTS accepts, for the handshake's `Host` (`testserver` for `*`)."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:  # Django's own default then, as the handshake check applies it
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    for pattern in allowed:
        host = "testserver" if pattern == "*" else pattern.removeprefix(".")
        if host and validate_host(host, allowed):
            return host
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS allows no host for the test socket's handshake: add 'testserver' to it (Django's "
        "test runner and pytest-django do), or pass connect(..., headers=[(b'host', b'<an allowed host>')])."
    )


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin1")


class fresh_node:  # noqa: N801 - a context manager, named as a function is
    """A new Node for the block (`with` or `async with`), the previous one put back afterwards.

    `async with` also stops the Node's beat, if a socket or request started one, and closes the
    parts it made on the running loop (engine clients, the hub's listener).
    """

    def __init__(self) -> None:
        self.node = Node()
        self._previous: Node | None = None

    def __enter__(self) -> Node:
        self._previous = replace(self.node)
        return self.node

    def __exit__(self, *exc_info: object) -> None:
        replace(self._previous)

    async def __aenter__(self) -> Node:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await registration.stop()
            await self.node.aclose()
        finally:
            self.__exit__(*exc_info)


class _Communicator(ApplicationCommunicator):
    """A WebSocket scope on the application, driven from the test: Channels' `WebsocketCommunicator`,
    without `channels.testing`, which imports daphne (a server the project need not have)."""

    def __init__(self, application: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        parsed = urlsplit(path)
        scope = {
            "type": "websocket",
            "path": unquote(parsed.path),
            "query_string": parsed.query.encode(),
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float) -> tuple[bool, Any]:
        """(True, subprotocol) when the handshake was accepted, else (False, close code)."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, response.get("subprotocol")

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})
        else:
            await self.send_input({"type": "websocket.receive", "text": text_data})

    async def send_json_to(self, data: Any) -> None:
        await self.send_to(text_data=json.dumps(data))
