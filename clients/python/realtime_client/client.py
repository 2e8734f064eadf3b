"""`Client`: the application's handle: connect, subscribe, request, and observe the state.

A facade over two parts, as `websockets` separates its protocol from its I/O: the session
core (`session.py`, with `channels.py` and `link.py`: protocol state and decisions, no
I/O) and its asyncio driver (`loop.py`: sockets, the read loop, timers, the token
provider, requests; `connection.py`: one socket's writer and tasks). The client hands the
core's events to the application: its own callbacks and each channel's `Subscription`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from . import errors
from .actions import Deliver, Emit, Finish
from .auth import Token
from .errors import RealtimeError
from .events import Callback, Dispatcher, Emitter
from .loop import Driver
from .models import ClientState, History, Member, Position, Publication, Published, User
from .redirects import SameOriginConnect
from .session import Session
from .subscription import Subscription


class _Done:
    """An awaitable that is already complete."""

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())


_DONE = _Done()
CHANNEL_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.@=-]{1,128}")  # fullmatch: "$" would admit a final newline


def _setting(name: str, doc: str) -> property:
    """A `Client` setting kept (read and written) by its session core."""

    def get(self: Client) -> Any:
        return getattr(self._core, name)

    def set(self: Client, value: Any) -> None:
        setattr(self._core, name, value)

    return property(get, set, doc=doc)


class Client:
    """A real-time client: connects, authenticates, resumes, reconnects, and keeps subscriptions.

    `connect` is called as `connect(url, **websockets_connect_options)` and must return an
    open `websockets` client connection (the default follows redirects within the URL's
    origin only; a `RealtimeError` it raises stops the client); `random` returns a float in
    [0, 1); `clock` is the wall clock in seconds (token expiry, liveness).
    """

    urls = _setting("urls", "The URLs tried in turn, one per attempt.")
    min_delay = _setting("min_delay", "Backoff: the first retry waits up to this many seconds.")
    max_delay = _setting("max_delay", "Backoff: no retry waits longer than this many seconds.")
    request_timeout = _setting("request_timeout", "Seconds a request (or a welcome) may take.")
    heartbeat_timeout = _setting("heartbeat_timeout", "Seconds past the heartbeat before a silent socket is dead.")

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
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("at least one URL is needed")
        if isinstance(token, str) and token:
            fixed, provider = token, None
        elif callable(token):
            fixed, provider = None, token
        else:
            raise TypeError("token must be a non-empty string or an async callable returning one")
        self._logger = logger or logging.getLogger("realtime_client")
        self._core = Session(
            urls,
            token=fixed,
            renewable=provider is not None,
            min_delay=min_delay,
            max_delay=max_delay,
            request_timeout=request_timeout,
            heartbeat_timeout=heartbeat_timeout,
            random=random,
            logger=self._logger,
        )
        self._dispatcher = Dispatcher(self._report)
        self._events = Emitter(frozenset({"state", "error"}), self._dispatcher, self._report)
        self._driver = Driver(
            self._core,
            connect=connect,
            clock=clock,
            provider=provider,
            report=self._report,
            output=self._output,
            logger=self._logger,
        )
        self._queue_size = queue_size
        self._subs: dict[str, Subscription] = {}
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Client {self.state} {self.urls[0]}>"

    @property
    def state(self) -> ClientState:
        """The current `ClientState`."""
        return self._core.state

    @property
    def session(self) -> str | None:
        """The server's session id (resumed on reconnect), None before the first welcome and once closed."""
        return self._core.session_id

    @property
    def user(self) -> User | None:
        """Who the server says the client is (from the last welcome)."""
        return self._core.user

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
            self._driver.apply(self._core.start())
            self._task = asyncio.get_running_loop().create_task(self._driver.run(), name="realtime-connection")
            self._task.add_done_callback(self._run_done)
        while self.state is not ClientState.CONNECTED:
            if self.state is ClientState.CLOSED:
                if self._core.fatal is not None:  # e.g. PasswordLogin with a wrong password: say that, not "closed"
                    raise self._core.fatal
                change = self._core.last_change
                code, reason = (change.code, change.reason) if change else (None, "")
                closed_by = f"{code} {reason}" if code is not None else reason
                raise RealtimeError(errors.CLOSED, f"closed before connecting: {closed_by}", close_code=code)
            await self._driver.wait_change(None)

    async def disconnect(self) -> None:
        """Close the connection (code 1000) and stop reconnecting; the state becomes `closed`."""
        self._core.disconnecting()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})
        self._driver.apply(self._core.close(1000, "disconnect"))
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
            core = self._core.channels.channel(channel)
            unsubscribe = functools.partial(self._unsubscribe, channel)
            sub = Subscription(core, unsubscribe, self._dispatcher, self._report, self._queue_size)
            self._subs[channel] = sub
        self._driver.apply(self._core.subscribe(channel))
        return sub

    async def publish(self, channel: str, data: Any) -> Published:
        """Publish `data` (any JSON value) to `channel`; returns where it landed."""
        reply = await self._driver.request({"type": "publish", "channel": channel, "data": data})
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
        reply = await self._driver.request(frame)
        pubs = [Publication.from_frame(p, channel) for p in reply.get("publications") or []]
        return History(reply.get("channel", channel), str(reply["epoch"]), int(reply["offset"]), pubs)

    async def presence(self, channel: str) -> list[Member]:
        """Who is on `channel` now: one `Member` per user."""
        reply = await self._driver.request({"type": "presence", "channel": channel})
        return [Member(m.get("id"), m.get("username", ""), int(m.get("connections", 1))) for m in reply["members"]]

    # ------------------------------------------------------------ internals

    def _output(self, action: Emit | Deliver | Finish) -> None:
        """Hand an event of the core to the application: the client's callbacks, or a subscription's."""
        if isinstance(action, Emit) and action.channel is None:
            self._events.emit(action.event, action.value)
            return
        sub = self._subs[action.channel]
        if isinstance(action, Deliver):
            sub.deliver(action.publication)
        elif isinstance(action, Finish):
            sub.finish()
        else:
            sub.emit(action.event, action.value)

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
            self._driver.apply(self._core.close(None, f"internal error: {task.exception()!r}"))

    def _unsubscribe(self, channel: str) -> Awaitable[None]:
        """End the channel now and send `unsubscribe` at once (so wire order is call order)."""
        rid, actions = self._core.unsubscribe(channel)
        if rid is None:
            self._driver.apply(actions)
            return _DONE
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(reply: dict[str, Any] | None) -> None:
            if reply is not None and reply.get("type") == "error":
                self._logger.debug("unsubscribe %s: %s", channel, reply.get("code"))
            if not done.done():
                done.set_result(None)

        self._driver.expect(rid, settle)
        self._driver.apply(actions)
        return done
