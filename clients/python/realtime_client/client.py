"""`Client`: the application's handle: connect, subscribe, request, and observe the state.

The client's state lives here; the connection loop is in `loop.py`, what each frame
does in `frames.py`, per-channel logic in `subscription.py`, per-connection tasks and
reply matching in `connection.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from . import errors, frames, loop
from .auth import Token, TokenProvider
from .connection import Connection
from .errors import RealtimeError
from .events import Callback, Dispatcher, Emitter
from .models import (
    ClientState,
    History,
    Member,
    Position,
    Publication,
    Published,
    StateChange,
    SubscriptionState,
    User,
)
from .redirects import SameOriginConnect
from .subscription import Subscription


class _Done:
    """An awaitable that is already complete."""

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())


_DONE = _Done()
CHANNEL_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.@=-]{1,128}")  # fullmatch: "$" would admit a final newline


class Client:
    """A real-time client: connects, authenticates, resumes, reconnects, and keeps subscriptions.

    `connect` is called as `connect(url, **websockets_connect_options)` and must return an
    open `websockets` client connection (the default follows redirects within the URL's
    origin only; a `RealtimeError` it raises stops the client); `random` returns a float in
    [0, 1); `clock` is the wall clock in seconds (token expiry, liveness).
    """

    def __init__(
        self,
        urls: str | list[str],
        *,
        token: Token,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        request_timeout: float = 10.0,
        heartbeat_timeout: float = 10.0,
        connect: Callable[..., Any] = SameOriginConnect,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        queue_size: int = 1024,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one URL is needed")
        self._token: str | None = None
        self._provider: TokenProvider | None = None
        if isinstance(token, str) and token:
            self._token = token
        elif callable(token):
            self._provider = token
        else:
            raise TypeError("token must be a non-empty string or an async callable returning one")
        self.min_delay, self.max_delay = min_delay, max_delay
        self.request_timeout, self.heartbeat_timeout = request_timeout, heartbeat_timeout
        self._connect, self._random, self._clock = connect, random, clock
        self._logger = logger or logging.getLogger("realtime_client")
        self._queue_size = queue_size
        self._state = ClientState.DISCONNECTED
        self._last_change: StateChange | None = None
        self.session: str | None = None
        self.user: User | None = None
        self._subs: dict[str, Subscription] = {}
        self._conn: Connection | None = None
        self._generations = itertools.count(1)
        self._ids = itertools.count(1)  # request ids, never reused across connections
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._attempt = 0  # failed attempts since the last welcome
        self._next_url = 0
        self._force_token = False
        self._retried_unauthorized = False
        self._fatal: RealtimeError | None = None  # the token error that closed the client, for connect()
        self._waiters: set[asyncio.Future[None]] = set()
        self._dispatcher = Dispatcher(self._report)
        self._events = Emitter(frozenset({"state", "error"}), self._dispatcher, self._report)

    def __repr__(self) -> str:
        return f"<Client {self._state} {self.urls[0]}>"

    @property
    def state(self) -> ClientState:
        """The current `ClientState`."""
        return self._state

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Every subscription object, by channel (wanted or not)."""
        return dict(self._subs)

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Listen to `state` (a `StateChange`) or `error` (an exception); returns a remover."""
        return self._events.on(event, callback)

    async def connect(self) -> None:
        """Start connecting (unless running) and return at the first `welcome`; raise if it closes first."""
        if self._task is None or self._task.done():
            self._closing, self._fatal = False, None
            for sub in self._subs.values():
                if sub.wanted:
                    sub.start()
            self._set_state(ClientState.CONNECTING, url=self.urls[self._next_url % len(self.urls)])
            self._task = asyncio.get_running_loop().create_task(loop.run(self), name="realtime-connection")
            self._task.add_done_callback(self._run_done)
        while self._state is not ClientState.CONNECTED:
            if self._state is ClientState.CLOSED:
                if self._fatal is not None:  # e.g. PasswordLogin with a wrong password: say that, not "closed"
                    raise self._fatal
                change = self._last_change
                code, reason = (change.code, change.reason) if change else (None, "")
                closed_by = f"{code} {reason}" if code is not None else reason
                raise RealtimeError(errors.CLOSED, f"closed before connecting: {closed_by}", close_code=code)
            await self._wait_change(None)

    async def disconnect(self) -> None:
        """Close the connection (code 1000) and stop reconnecting; the state becomes `closed`."""
        self._closing = True
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})
        self._close(1000, "disconnect")
        await self._dispatcher.drain(self.request_timeout)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    def subscribe(self, channel: str) -> Subscription:
        """Return the channel's one `Subscription`, subscribing it (now if connected, else at `welcome`)."""
        if not isinstance(channel, str) or not CHANNEL_RE.fullmatch(channel):
            raise ValueError(f"not a channel name: {channel!r} (namespace:name)")
        sub = self._subs.get(channel)
        if sub is None:
            sub = self._subs[channel] = Subscription(self, channel, self._queue_size)
        if not sub.wanted:
            sub.start()
            conn = self._live()
            if conn is not None:
                frames.send_subscribe(self, conn, sub)
        return sub

    async def publish(self, channel: str, data: Any) -> Published:
        """Publish `data` (any JSON value) to `channel`; returns where it landed."""
        reply = await self._request({"type": "publish", "channel": channel, "data": data})
        return Published(reply.get("channel", channel), str(reply["epoch"]), int(reply["offset"]))

    async def history(
        self, channel: str, since: Position | tuple[str, int] | None = None, limit: int | None = None
    ) -> History:
        """The channel's publications after `since` (or its newest `limit`), with its newest position."""
        frame: dict[str, Any] = {"type": "history", "channel": channel}
        if since is not None:
            epoch, offset = (since.epoch, since.offset) if isinstance(since, Position) else since
            frame["since"] = {"epoch": epoch, "offset": offset}
        if limit is not None:
            frame["limit"] = limit
        reply = await self._request(frame)
        pubs = [Publication.from_frame(p, channel) for p in reply.get("publications") or []]
        return History(reply.get("channel", channel), str(reply["epoch"]), int(reply["offset"]), pubs)

    async def presence(self, channel: str) -> list[Member]:
        """Who is on `channel` now: one `Member` per user."""
        reply = await self._request({"type": "presence", "channel": channel})
        return [Member(m.get("id"), m.get("username", ""), int(m.get("connections", 1))) for m in reply["members"]]

    # ------------------------------------------------------------ internals shared by loop.py and frames.py

    def _set_state(
        self,
        state: ClientState,
        code: int | None = None,
        reason: str = "",
        *,
        delay: float | None = None,
        resumed: bool | None = None,
        url: str | None = None,
    ) -> None:
        change = StateChange(state, self._state, code, reason, delay, resumed, url)
        self._state, self._last_change = state, change
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._events.emit("state", change)

    async def _wait_change(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._waiters.discard(waiter)

    def _close(self, code: int | None, reason: str) -> None:
        """Enter `closed`: forget the session, end every iterator (subscriptions stay wanted)."""
        self.session = None
        for sub in self._subs.values():
            sub.state, sub.pending = SubscriptionState.UNSUBSCRIBED, None
            sub.finish()
        if self._state is not ClientState.CLOSED:
            self._set_state(ClientState.CLOSED, code, reason)

    def _report(self, exc: BaseException, where: str) -> None:
        """Log an isolated failure and hand it to the `error` callbacks (not for their own failures)."""
        if isinstance(exc, RealtimeError):
            self._logger.warning("%s: %s", where, exc)
        else:
            self._logger.error("%s failed: %r", where, exc, exc_info=exc)
        if where != "error":
            self._events.emit("error", exc)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # a bug: never leave it unseen
            self._report(task.exception(), "connection loop")
            self._close(None, f"internal error: {task.exception()!r}")

    def _live(self) -> Connection | None:
        conn = self._conn
        return conn if conn is not None and conn.welcomed else None

    async def _fetch_token(self) -> str:
        """Ask the provider; never accept an empty token."""
        token = await self._provider()
        if not isinstance(token, str) or not token:
            raise RealtimeError("unauthorized", "the token provider returned no token")
        return token

    def _unsubscribe(self, sub: Subscription) -> Awaitable[None]:
        """End `sub` now and send `unsubscribe` at once (so wire order is call order)."""
        was_wanted = sub.wanted
        sub.end("unsubscribe")
        conn = self._live()
        if not was_wanted or conn is None:
            return _DONE
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(reply: dict[str, Any] | None) -> None:
            if reply is not None and reply.get("type") == "error":
                self._logger.debug("unsubscribe %s: %s", sub.channel, reply.get("code"))
            if not done.done():
                done.set_result(None)

        conn.request({"type": "unsubscribe", "id": next(self._ids), "channel": sub.channel}, settle)
        return done

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a request once connected (waiting up to `request_timeout` in all) and return its reply."""
        event_loop = asyncio.get_running_loop()
        deadline = event_loop.time() + self.request_timeout
        while (conn := self._live()) is None or event_loop.time() >= deadline:
            if self._state is ClientState.CLOSED:
                raise RealtimeError(errors.CLOSED, "the client is closed", sent=False)
            remaining = deadline - event_loop.time()
            if remaining <= 0:
                raise RealtimeError(errors.NOT_CONNECTED, f"not connected within {self.request_timeout} s", sent=False)
            await self._wait_change(remaining)
        return await self._request_on(conn, frame, deadline)

    async def _request_on(self, conn: Connection, frame: dict[str, Any], deadline: float | None = None) -> dict:
        """Send a request on `conn` and return its reply; raise `RealtimeError` (`sent=True`) on an error or timeout."""
        event_loop = asyncio.get_running_loop()
        deadline = deadline if deadline is not None else event_loop.time() + self.request_timeout
        future: asyncio.Future[dict[str, Any] | None] = event_loop.create_future()

        def settle(reply: dict[str, Any] | None) -> None:
            if not future.done():
                future.set_result(reply)  # None: the connection ended first

        rid = next(self._ids)
        conn.request({**frame, "id": rid}, settle)
        try:
            await asyncio.wait({future}, timeout=max(0.0, deadline - event_loop.time()))
            if not future.done():
                await asyncio.sleep(0)  # one loop turn for a reply already received (centrifuge-js #398)
            if not future.done():
                message = f"no reply to {frame['type']} within {self.request_timeout} s"
                raise RealtimeError(errors.TIMEOUT, message, sent=True)
        finally:
            conn.pending.pop(rid, None)
            if not future.done():
                future.cancel()
        reply = future.result()
        if reply is None:
            raise await self._ended(frame["type"], deadline)
        if reply.get("type") == "error":
            raise RealtimeError(reply.get("code", "error"), reply.get("message", ""), sent=True)
        return reply

    async def _ended(self, kind: str, deadline: float) -> RealtimeError:
        """The error of a sent request whose connection ended: `closed` if the client closes next, else
        `disconnected` (the loop decides right after the connection's end; bounded by the deadline)."""
        event_loop = asyncio.get_running_loop()
        while self._state is ClientState.CONNECTED and (remaining := deadline - event_loop.time()) > 0:
            await self._wait_change(remaining)
        code = errors.CLOSED if self._state is ClientState.CLOSED else errors.DISCONNECTED
        return RealtimeError(code, f"the connection ended before the reply to {kind}", sent=True)
